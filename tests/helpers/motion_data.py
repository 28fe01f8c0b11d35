"""Tiny real motion videos for trainer/dataset tests (a bright square moving left / right /
up on a dark background; classes differ only by motion). Encoded with PyAV as H.264 mp4."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.data.encode import write_video

CLASSES = ("left", "right", "up")
_DIRS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def motion_video(path: Path, direction: str, rng: np.random.Generator, *, size: int = 32,
                 frames: int = 24, fps: float = 15) -> Path:
    clip = np.full((frames, size, size, 3), 30, np.uint8)
    x0, y0 = rng.integers(0, size - 6, 2)
    dx, dy = _DIRS[direction]
    for t in range(frames):
        x, y = int((x0 + dx * t) % (size - 6)), int((y0 + dy * t) % (size - 6))
        clip[t, y:y + 6, x:x + 6] = 230
    return write_video(path, clip, fps=fps)


#: classes of the colour task: the square's colour (RGB), not its motion, gives the class
COLOURS = {"red": (230, 40, 40), "green": (40, 230, 40), "blue": (40, 40, 230)}


def colour_video(path: Path, colour: str, rng: np.random.Generator, *, size: int = 32,
                 frames: int = 24, fps: float = 15) -> Path:
    """A grey square drifting in a random direction over a background of one colour: a task a
    tiny net fits with certainty in a few steps (for "does the trainer learn" tests that must hold on any CPU)."""
    clip = np.empty((frames, size, size, 3), np.uint8)
    clip[:] = COLOURS[colour]
    x0, y0 = rng.integers(0, size - 10, 2)
    dx, dy = _DIRS[str(rng.choice(list(_DIRS)))]
    for t in range(frames):
        x, y = int((x0 + dx * t) % (size - 10)), int((y0 + dy * t) % (size - 10))
        clip[t, y:y + 10, x:x + 10] = 128
    return write_video(path, clip, fps=fps)


def make_dataset(root: Path, *, per_class: int = 6, val_per_class: int = 2,
                 classes: tuple[str, ...] = CLASSES, seed: int = 0, size: int = 32,
                 task: str = "motion") -> Path:
    """root/{train,val}/<class>/*.mp4 and root/classes.txt; task "motion" (classes = directions)
    or "colour" (classes = COLOURS' names)."""
    rng = np.random.default_rng(seed)
    render = {"motion": motion_video, "colour": colour_video}[task]
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                render(d / f"{c}_{k:02d}.mp4", c, rng, size=size)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return root


#: a 4-stage ir-CSN small enough for 1-thread tests (8x32x32 clips)
TINY_SPEC = {"name": "tiny-ir-csn", "stem_width": 8, "stages": [
    {"blocks": 1, "width": 8, "inner": 8, "block": "ir"},
    {"blocks": 1, "width": 16, "inner": 16, "block": "ir"},
    {"blocks": 1, "width": 32, "inner": 32, "block": "ir"},
    {"blocks": 1, "width": 32, "inner": 32, "block": "ir"}]}
