"""Decode throughput of backend.data.video beside `ffmpeg -threads 1 -i FILE -f null -` (one run).

    python bench/bench_decode.py [--seconds 20] [--repeat 3]

Writes a 400x224, 30 fps H.264 file (keyframe every 2 s) to a temp folder, then times
ffmpeg's single-threaded full decode, PyAV full decodes, and the loader sampling 10 clips x
8 frames (rate 2) by seeking, and 10 test clips of a small synthetic video decoded once and
cached versus seeking per clip. Prints best-of-N times, frames/s and ratios to ffmpeg.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.data import video  # noqa: E402
from backend.data.encode import write_video  # noqa: E402
from backend.synth import make_scene, render  # noqa: E402

from _timing import best  # noqa: E402  (bench/ is the script's folder)

W, H, FPS = 400, 224, 30


def make_video(path: Path, seconds: int) -> int:
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 256, (H, 2 * W, 3), dtype=np.uint8)
    n = seconds * FPS
    frames = (np.roll(tex, -3 * i, axis=1)[:, :W] for i in range(n))  # panning texture
    write_video(path, frames, FPS, gop=2 * FPS, crf=23)
    return n


def pyav_full(path: Path, threads: int, rgb: bool) -> int:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type, s.thread_count = ("AUTO", 0) if threads != 1 else ("SLICE", 1)
        n = 0
        for f in c.decode(s):
            if rgb:
                f.to_ndarray(format="rgb24")
            n += 1
    return n


def loader_clips(path: Path, threads: int, short_side: int | None = None) -> int:
    with video.VideoReader(path, threads=threads) as r:
        starts = video.sample_clip_times(r.duration, r.fps, frames=8, rate=2, num_clips=10)
        return sum(len(r.clip(t, 8, 2, short_side=short_side)) for t in starts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.mp4"
        n = make_video(path, args.seconds)
        ffmpeg = ["ffmpeg", "-v", "error", "-threads", "1", "-i", str(path), "-f", "null", "-"]
        rows = [  # (label, frames delivered, seconds)
            ("ffmpeg -threads 1 full decode", n, best(lambda: subprocess.run(ffmpeg, check=True), args.repeat)),
            ("PyAV full decode, 1 thread", n, best(lambda: pyav_full(path, 1, False), args.repeat)),
            ("PyAV full decode + RGB, 1 thread", n, best(lambda: pyav_full(path, 1, True), args.repeat)),
            ("PyAV full decode + RGB, auto threads", n, best(lambda: pyav_full(path, 0, True), args.repeat)),
            ("loader 1 centre clip x8 (seek), 1 thread", 8, best(lambda: video.decode_clip(path, 9.5, threads=1), args.repeat)),
            ("loader 10x8 clips (seek), 1 thread", 80, best(lambda: loader_clips(path, 1), args.repeat)),
            ("loader 10x8 clips (seek), auto threads", 80, best(lambda: loader_clips(path, 0), args.repeat)),
            ("loader 10x8 clips, short side 128", 80, best(lambda: loader_clips(path, 1, 128), args.repeat)),
            ("test_clips 10 clips -> (10,3,8,112,112)", 80,
             best(lambda: video.test_clips(path, size=112, num_clips=10, threads=1), args.repeat)),
        ]
        small = write_video(Path(tmp) / "small.mp4", render(make_scene("zoom-in", (0, 0, 0))), 15)
        for label, cache in (("decode-once cache", video.VideoReader.CACHE_BYTES), ("seek per clip", 0)):
            video.VideoReader.CACHE_BYTES = cache
            rows.append((f"test_clips 10 on 64x64x32 synth, {label}", 80,
                         best(lambda: video.test_clips(small, size=56, num_clips=10, threads=1), args.repeat)))
    base = rows[0][2]
    print(f"video: {W}x{H} H.264, {FPS} fps, {n} frames ({args.seconds} s), keyframe every 2 s; best of {args.repeat}")
    print(f"{'what':50} {'frames':>6} {'time ms':>9} {'frames/s':>9} {'time vs ffmpeg':>15}")
    for label, k, t in rows:
        print(f"{label:50} {k:6d} {t * 1e3:9.1f} {k / t:9.0f} {t / base:14.2f}x")


if __name__ == "__main__":
    main()
