"""A generated motion dataset: classes differ only by how one shape moves.

Each video shows a textured gradient background, static distractor shapes and one striped
target shape (circle, square, triangle or star) with random colours, size, orientation and
position, plus per-frame pixel noise. The class is the target's motion: it moves
left/right/up/down (wrapping around the frame edges), rotates clockwise/counter-clockwise, or
zooms in/out. The appearance of the i-th video of a split is drawn from a seed that does not
depend on the class, so every class has a twin with the same first frame: no single frame
(the first exactly; later ones nearly) tells the classes apart, only motion does.

    python -m backend.synth --out DIR --per-class N --seed S [--size 64] [--frames 32]
        [--fps 15] [--splits train=0.7,val=0.15,test=0.15] [--ext mp4] [--difficulty hard]

writes ``DIR/<split>/<class>/<class>_<i>.mp4``, ``DIR/classes.txt`` (one class per line, in
label order) and ``DIR/<split>.csv`` (``path,label``; paths relative to DIR, label = class
name). The same arguments give the same frames and files.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from backend.data.encode import write_video

__all__ = ["CLASSES", "Scene", "render", "make_scene", "generate", "write_video"]

CLASSES = ("move-left", "move-right", "move-up", "move-down", "rotate-cw", "rotate-ccw", "zoom-in", "zoom-out")
SHAPES = ("circle", "square", "triangle", "star")
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class Difficulty:
    """How hard the motion is to see: clutter, noise, target size and motion strength."""

    distractors: tuple[int, int]   # number of static shapes, [lo, hi)
    texture: float                 # background texture amplitude (0-255 scale)
    noise: tuple[float, float]     # per-frame pixel noise std range
    radius: tuple[float, float]    # target radius range (fraction of the frame)
    motion: float                  # multiplies speed, spin and zoom
    # the target's stripe cycles across its width: a stripe period near twice the step between
    # sampled frames makes interior stripes look as if they moved backwards (only the outline
    # gives the direction away), so wide stripes are easier
    stripes: tuple[float, float] = (1.5, 3.0)
    spin: float = 1.0              # multiplies the rotation speed once more


DIFFICULTIES = {
    "hard": Difficulty((1, 4), 25.0, (2.0, 8.0), (0.12, 0.28), 1.0),   # the original data
    "medium": Difficulty((0, 2), 12.0, (1.0, 4.0), (0.16, 0.30), 1.25),
    # wide stripes (measured: with hard's, small nets told the motion's axis, not its
    # direction) and faster spin (rotation was confused with zoom)
    "easy": Difficulty((0, 1), 4.0, (0.0, 2.0), (0.20, 0.32), 1.5, (0.6, 1.2), 1.6),
}


@dataclass(frozen=True)
class Shape:
    kind: str
    x: float  # centre, pixels
    y: float
    radius: float  # pixels
    angle: float  # radians, counter-clockwise
    colours: tuple[np.ndarray, np.ndarray]  # stripe colours, RGB float
    stripes: float  # stripe frequency across the shape


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one video; the class only sets the three motion rates."""

    size: int
    frames: int
    background: np.ndarray  # (H, W, 3) float
    distractors: tuple[Shape, ...]
    target: Shape
    velocity: tuple[float, float]  # pixels per frame (x right, y down)
    spin: float  # radians per frame, counter-clockwise positive
    zoom: float  # scale factor per frame
    noise: float  # per-frame Gaussian pixel noise (std, 0-255 scale)
    noise_seed: int


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in the shape's unit coordinates (radius 1)."""
    if kind == "circle":
        return u * u + v * v <= 1.0
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if kind == "triangle":
        inside = np.ones(u.shape, bool)
        for k in range(3):
            a = math.pi / 2 + 2 * math.pi * k / 3
            inside &= u * math.cos(a) + v * math.sin(a) <= 0.5
        return inside
    if kind == "star":
        return np.hypot(u, v) <= 0.6 + 0.4 * np.cos(5 * np.arctan2(v, u))
    raise ValueError(f"unknown shape {kind!r}")


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> np.ndarray:
    return np.mgrid[0:h, 0:w].astype(np.float32)


def _draw(img: np.ndarray, s: Shape, x: float, y: float, radius: float, angle: float, wrap: bool) -> None:
    """Paint a striped shape onto img (H, W, 3) in place; ``wrap`` draws across edges toroidally."""
    h, w = img.shape[:2]
    yy, xx = _grid(h, w)
    dx, dy = xx - x, yy - y
    if wrap:
        dx, dy = (dx + w / 2) % w - w / 2, (dy + h / 2) % h - h / 2
    c, si = math.cos(angle), math.sin(angle)
    # image y points down: a counter-clockwise angle on screen is -angle in array coordinates
    u = (c * dx - si * dy) / radius
    v = (si * dx + c * dy) / radius
    mask = _shape_mask(s.kind, u, v)
    stripe = np.sin(u * s.stripes * math.pi) > 0
    img[mask & stripe] = s.colours[0]
    img[mask & ~stripe] = s.colours[1]


def _random_shape(rng: np.random.Generator, size: int, rmin: float, rmax: float,
                  stripes: tuple[float, float] = (1.5, 3.0)) -> Shape:
    return Shape(
        kind=str(rng.choice(SHAPES)),
        x=float(rng.uniform(0, size)),
        y=float(rng.uniform(0, size)),
        radius=float(size * math.exp(rng.uniform(math.log(rmin), math.log(rmax)))),
        angle=float(rng.uniform(0, 2 * math.pi)),
        colours=(rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)),
        stripes=float(rng.uniform(*stripes)),
    )


def _background(rng: np.random.Generator, size: int, texture: float = 25.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a = rng.uniform(0, 2 * math.pi)
    t = (np.cos(a) * xx + np.sin(a) * yy)[..., None]
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = c0 * (1 - t) + c1 * t
    for _ in range(3):  # low-frequency texture
        f, ph, b = rng.uniform(1, 4, 2), rng.uniform(0, 2 * math.pi), rng.uniform(-texture, texture, 3)
        img += np.sin(2 * math.pi * (f[0] * xx + f[1] * yy) + ph)[..., None] * b
    img += rng.normal(0, 6 * texture / 25, img.shape)  # static fine texture
    return img.astype(np.float32)


def make_scene(label: str, seed: tuple[int, ...], *, size: int = 64, frames: int = 32,
               difficulty: str = "hard") -> Scene:
    """Random scene for class ``label``. The appearance depends only on ``seed``; the motion
    on ``seed`` and the class."""
    if label not in CLASSES:
        raise ValueError(f"unknown class {label!r}; one of {', '.join(CLASSES)}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; one of {', '.join(DIFFICULTIES)}")
    d = DIFFICULTIES[difficulty]
    look = np.random.default_rng(np.random.SeedSequence(seed + (0,)))
    move = np.random.default_rng(np.random.SeedSequence(seed + (1 + CLASSES.index(label),)))
    background = _background(look, size, d.texture)
    distractors = tuple(_random_shape(look, size, 0.08, 0.18)
                        for _ in range(int(look.integers(*d.distractors))))
    target = _random_shape(look, size, *d.radius, stripes=d.stripes)
    noise, noise_seed = float(look.uniform(*d.noise)), int(look.integers(2**31))

    velocity, spin, zoom = (0.0, 0.0), 0.0, 1.0
    kind, _, direction = label.partition("-")
    if kind == "move":
        speed = move.uniform(0.6, 1.4) * size / 32 * d.motion  # pixels per frame
        heading = {"right": 0.0, "up": 90.0, "left": 180.0, "down": 270.0}[direction]
        a = math.radians(heading + move.uniform(-20, 20))
        velocity = (speed * math.cos(a), -speed * math.sin(a))
    elif kind == "rotate":
        spin = math.radians(move.uniform(4, 10) * d.motion * d.spin) * (1 if direction == "ccw" else -1)
    else:
        total = move.uniform(1.8, 3.0) ** d.motion  # size ratio between first and last frame
        if direction == "in":  # keep the grown shape within about the frame
            total = min(total, max(1.5, 0.45 * size / target.radius))
        zoom = total ** ((1 if direction == "in" else -1) / max(frames - 1, 1))
    return Scene(size, frames, background, distractors, target, velocity, spin, zoom, noise, noise_seed)


def render(scene: Scene) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of a scene."""
    base = scene.background.copy()
    for d in scene.distractors:
        _draw(base, d, d.x, d.y, d.radius, d.angle, wrap=False)
    noise = np.random.default_rng(scene.noise_seed)
    t = scene.target
    out = np.empty((scene.frames, scene.size, scene.size, 3), np.uint8)
    for i in range(scene.frames):
        img = base.copy()
        x, y = t.x + scene.velocity[0] * i, t.y + scene.velocity[1] * i
        _draw(img, t, x, y, t.radius * scene.zoom**i, t.angle + scene.spin * i, wrap=True)
        img += noise.standard_normal(img.shape, dtype=np.float32) * np.float32(scene.noise)
        out[i] = np.clip(img, 0, 255)
    return out


def _split_counts(per_class: int, fractions: dict[str, float]) -> dict[str, int]:
    counts = {k: int(round(per_class * f)) for k, f in fractions.items() if k != "train"}
    counts = {"train": per_class - sum(counts.values()), **counts}
    if any(n < 0 for n in counts.values()):
        raise ValueError(f"splits {fractions} do not fit {per_class} videos per class")
    return counts


def generate(
    out: str | Path,
    per_class: int,
    seed: int = 0,
    *,
    size: int = 64,
    frames: int = 32,
    fps: float = 15,
    splits: dict[str, float] | None = None,
    ext: str = "mp4",
    classes: tuple[str, ...] = CLASSES,
    difficulty: str = "hard",
) -> dict[str, int]:
    """Write the dataset under ``out``; returns the number of videos per split."""
    if size % 2 or size < 16:
        raise ValueError("size must be even and >= 16")
    if per_class < 1 or frames < 2:
        raise ValueError("per_class must be >= 1 and frames >= 2")
    splits = splits if splits is not None else {"train": 0.7, "val": 0.15, "test": 0.15}
    unknown = set(splits) - set(SPLIT_IDS)
    if unknown or abs(sum(splits.values()) - 1) > 1e-6:
        raise ValueError(f"splits must be fractions of train/val/test summing to 1, got {splits}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(c + "\n" for c in classes))
    counts = _split_counts(per_class, splits)
    for split, n in counts.items():
        rows = []
        for label in classes:
            folder = out / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                scene = make_scene(label, (seed, SPLIT_IDS[split], i), size=size, frames=frames,
                                   difficulty=difficulty)
                path = write_video(folder / f"{label}_{i:05d}.{ext}", render(scene), fps)
                rows.append((path.relative_to(out).as_posix(), label))
        with (out / f"{split}.csv").open("w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *rows])
    return {k: v * len(classes) for k, v in counts.items()}


def _parse_splits(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected train=F,val=F,test=F, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--per-class", type=int, required=True, help="videos per class, over all splits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=64, help="frame width and height (even)")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--fps", type=float, default=15)
    ap.add_argument("--splits", type=_parse_splits, default=None, help="train=0.7,val=0.15,test=0.15")
    ap.add_argument("--ext", default="mp4", choices=["mp4", "webm", "mkv", "avi", "mov", "gif"])
    ap.add_argument("--difficulty", default="hard", choices=list(DIFFICULTIES),
                    help="hard: clutter, noise, subtle motion (the original data); medium/easy: "
                         "less clutter and noise, a bigger target, stronger motion")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        counts = generate(args.out, args.per_class, args.seed, size=args.size, frames=args.frames,
                          fps=args.fps, splits=args.splits, ext=args.ext,
                          difficulty=args.difficulty)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(counts.values())
    print(f"wrote {total} videos ({', '.join(f'{k} {v}' for k, v in counts.items())}) "
          f"of {len(CLASSES)} classes to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    from backend.cli import run_cli
    raise SystemExit(run_cli(main))
