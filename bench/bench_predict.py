"""Long-video prediction: backend.predict's decode-once timeline beside seeking per window.

    python bench/bench_predict.py [--seconds 60] [--size 320] [--gop 150] [--repeat 2]

Writes a SIZE x SIZE, 15 fps H.264 video (keyframe every GOP frames) to a temp folder, then
scores 2 s windows every 1 s with the shipped model, once with ``backend.predict.timeline``
(every frame decoded once, in order) and once by seeking to each window's clip with the same
transform (``VideoReader.clip``; a video this big is not kept whole in the reader's cache).
Prints best-of-N times, the ratio, and the largest probability difference (expected 0).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.data.encode import write_video  # noqa: E402
from backend.inference.predictor import Predictor  # noqa: E402
from backend.predict import timeline  # noqa: E402
from backend.data.video import VideoReader, sample_clip_times  # noqa: E402

from _timing import best  # noqa: E402  (bench/ is the script's folder)

SHIPPED = Path(__file__).resolve().parent.parent / "backend" / "assets" / "motion_csn.pt"


def seek_per_window(pr: Predictor, video: Path, starts: list[float]) -> torch.Tensor:
    tf = pr.transform()
    with VideoReader(video, threads=0) as r:
        (offset,) = sample_clip_times(2.0, r.fps, frames=pr.frames, rate=pr.rate)
        x = torch.cat([tf.load(r, s + offset, pr.frames, pr.rate) for s in starts])
    return pr.probs(x, batch=8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--gop", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    base = np.random.default_rng(0).integers(0, 255, (a.size, a.size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as d:
        video = write_video(Path(d) / "long.mp4", [np.roll(base, i, axis=1) for i in range(15 * a.seconds)],
                            fps=15, gop=a.gop)
        pr = Predictor(SHIPPED)
        tl = timeline(pr, video, window=2.0, stride=1.0)
        once = best(lambda: timeline(pr, video, window=2.0, stride=1.0), a.repeat)
        seek = best(lambda: seek_per_window(pr, video, tl.starts), a.repeat)
        diff = (seek_per_window(pr, video, tl.starts) - tl.probs).abs().max().item()
    print(f"{a.seconds} s at {a.size}px, gop {a.gop}: {len(tl.starts)} windows, "
          f"{tl.frames_decoded} frames decoded")
    print(f"decode once {once:.2f} s, seek per window {seek:.2f} s: seek / once = {seek / once:.2f}; "
          f"max probability difference {diff:.1e}")


if __name__ == "__main__":
    main()
