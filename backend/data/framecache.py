"""Decoded videos kept in memory: small datasets are decoded once and every training or
validation clip is cut from the cached frames (same sampling and jitter as decoding: clip
start by time, short side scaled, crop; the resize is torch's bilinear instead of swscale's).

A memory budget bounds the cache; videos beyond it are decoded per clip as before, and a
video that cannot be decoded is left out (its clips then fail as usual, and are counted).
DataLoader workers forked after :meth:`FrameCache.fill` share the frames copy-on-write.
Runs on the same data (a study's seeds and models) share one decode through a cache file:
:meth:`FrameCache.save` writes the frames, :meth:`FrameCache.load` takes back those whose video
file is unchanged (same size and modification time).
"""
from __future__ import annotations

import json
import logging
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedVideo:
    frames: np.ndarray  # uint8 (N, H, W, 3), every frame at the native rate
    fps: float
    duration: float

    def clip(self, start_s: float, frames: int, rate: int) -> np.ndarray:
        """uint8 (T, H, W, 3): the frame shown at ``start + i * rate / fps``, looping."""
        n = len(self.frames)
        idx = [math.floor(start_s * self.fps + i * rate + 0.25) % n for i in range(frames)]
        return self.frames[idx]


def decode_all(path: str) -> CachedVideo:
    """Every frame of a video; raises ``backend.data.video.VideoError``."""
    from backend.data.video import VideoReader
    with VideoReader(path, threads=1) as r:
        n = max(2, round(r.duration * r.fps))
        return CachedVideo(r.clip(0.0, n, 1), r.fps, r.duration)


class _Decode(Dataset):
    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from backend.data.video import VideoError
        try:
            return self.paths[i], decode_all(self.paths[i])
        except (VideoError, OSError):
            return self.paths[i], None


class FrameCache:
    """``path -> CachedVideo`` for as many videos as fit in ``budget_mb``."""

    def __init__(self, budget_mb: float):
        self.budget = int(budget_mb * 2**20)
        self.videos: dict[str, CachedVideo] = {}
        self.bytes = 0
        self.skipped = 0  # videos left to per-clip decoding (over budget)
        self.from_file = 0  # videos taken from a cache file by :meth:`load`

    def get(self, path: str) -> CachedVideo | None:
        return self.videos.get(path)

    def fill(self, paths: Sequence[str], workers: int = 0) -> "FrameCache":
        """Decode ``paths`` (once each, ``workers`` processes) until the budget is full."""
        todo = [p for p in dict.fromkeys(paths) if p not in self.videos]
        if self.budget <= 0 or not todo:
            self.skipped += len(todo) if self.budget <= 0 else 0
            return self
        loader = DataLoader(_Decode(todo), batch_size=None, num_workers=workers,
                            worker_init_fn=_one_thread)
        for done, (path, video) in enumerate(loader, start=1):
            if video is None:
                continue
            if self.bytes + video.frames.nbytes > self.budget:
                self.skipped = len(todo) - done + 1
                log.warning("frame cache: budget of %d MB reached after %d of %d videos; the "
                            "rest are decoded per clip", self.budget >> 20, len(self.videos),
                            len(todo))
                break
            self.videos[path] = video
            self.bytes += video.frames.nbytes
        return self

    def fill_shared(self, path: str | os.PathLike, paths: Sequence[str], workers: int = 0,
                    write: bool = True) -> "FrameCache":
        """:meth:`fill`, first taking what the cache file ``path`` has of ``paths``
        (:meth:`load`), and (``write``) writing the file back when more had to be decoded."""
        if self.budget > 0:
            self.load(path, paths)
        before = len(self.videos)
        self.fill(paths, workers=workers)
        if write and len(self.videos) > before:
            self.save(path)
        return self

    def stats(self) -> dict[str, float]:
        return {"videos": len(self.videos), "decoded_per_clip": self.skipped,
                "mb": round(self.bytes / 2**20, 1), "budget_mb": self.budget >> 20,
                "from_file": self.from_file}

    def save(self, path: str | os.PathLike) -> None:
        """Write every cached video to ``path`` (an uncompressed .npz with a JSON index of each
        video's file size and modification time); through a temporary name and a rename, so
        runs writing or reading the same file at once never see half of it."""
        path = Path(path)
        index, arrays = [], {}
        for i, (video_path, v) in enumerate(self.videos.items()):
            st = os.stat(video_path)
            index.append({"path": video_path, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                          "fps": v.fps, "duration": v.duration, "array": f"v{i}"})
            arrays[f"v{i}"] = v.frames
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, index=np.frombuffer(json.dumps(index).encode(), np.uint8), **arrays)
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike, paths: Sequence[str]) -> int:
        """Take from the cache file ``path`` the videos of ``paths`` whose file is unchanged,
        within the budget; how many were taken. A missing or unreadable file takes none (the
        videos are then decoded as usual)."""
        wanted = set(paths) - set(self.videos)
        if not os.path.isfile(path):
            return 0
        try:
            with zipfile.ZipFile(path) as z:
                index = _read_member(z, "index", 2**26)
                if index is None:
                    raise ValueError("index too large")
                index = json.loads(index.tobytes())
                taken = sum(self._take(z, entry) for entry in index if entry.get("path") in wanted)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
            log.warning("frame cache file %s not used (%s); decoding the videos", path,
                        type(e).__name__)
            return 0
        self.from_file += taken
        return taken

    def _take(self, z: zipfile.ZipFile, entry: dict) -> bool:
        """One indexed video into the cache when its file is unchanged and it fits the budget."""
        try:
            st = os.stat(entry["path"])
        except OSError:
            return False
        if (st.st_size, st.st_mtime_ns) != (entry["size"], entry["mtime_ns"]):
            return False
        frames = _read_member(z, entry["array"], self.budget - self.bytes)
        if frames is None or frames.dtype != np.uint8 or frames.ndim != 4:
            return False
        self.videos[entry["path"]] = CachedVideo(frames, float(entry["fps"]),
                                                 float(entry["duration"]))
        self.bytes += frames.nbytes
        return True


def _read_member(z: zipfile.ZipFile, name: str, max_bytes: int) -> np.ndarray | None:
    """The array ``name`` of an .npz, or None when it is larger than ``max_bytes`` (checked
    before reading; never unpickles)."""
    info = z.getinfo(f"{name}.npy")
    if info.file_size > max_bytes:
        return None
    with z.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _one_thread(_: int) -> None:
    """DataLoader worker init (a module function: spawned workers must pickle it)."""
    torch.set_num_threads(1)


def cached_train_clip(v: CachedVideo, transform, *, frames: int, rate: int,
                      rng: np.random.Generator) -> torch.Tensor:
    """As ``backend.data.video.train_clip``, from cached frames: float (3, T, S, S)."""
    from backend.data.video import sample_clip_times
    (start,) = sample_clip_times(v.duration, v.fps, frames=frames, rate=rate, train=True, rng=rng)
    s = transform.pick_scale(rng)
    return transform(v.clip(start, frames, rate), rng, short_side=s)[0]


def cached_test_clips(v: CachedVideo, transform, *, frames: int, rate: int,
                      num_clips: int) -> torch.Tensor:
    """As ``backend.data.video.test_clips`` (one crop), from cached frames: (N, 3, T, S, S)."""
    from backend.data.video import sample_clip_times
    starts = sample_clip_times(v.duration, v.fps, frames=frames, rate=rate, num_clips=num_clips)
    return torch.cat([transform(v.clip(t, frames, rate)) for t in starts])
