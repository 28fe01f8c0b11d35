"""Classify a long video window by window: top-k per window over the whole video.

    python -m backend.predict CKPT VIDEO --window 2s --stride 1s [--clips 1 --crops 1 --topk 5]
                              [--json | --csv] [--out FILE] [--device auto]

Windows start at 0, stride, 2*stride, ... and each lies inside the video (a video shorter than
a window is one window). Each window is scored like a short video (paper §4.1 test sampling,
``backend.inference.predictor.Predictor``): ``--clips`` uniformly spaced clips of the model's T frames
at its rate inside the window, ``--crops`` crops each, softmax averaged. The video is decoded
once, in order: every frame is decoded a single time and kept only while a window still needs
it, so memory holds about one window of frames whatever the video's length.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from backend.data.video import VideoReader, clip_span_s, sample_clip_times

Progress = Callable[[float, str], None]
MAX_WINDOW_S = 600.0
MAX_WINDOWS = 100_000
_SECONDS = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$")


def parse_seconds(text: str | float, name: str) -> float:
    """``"2s"``, ``"1.5"``, ``"500ms"`` -> seconds; ValueError naming ``name`` otherwise."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _SECONDS.match(str(text)[:40])
        if not m:
            raise ValueError(f"{name}: expected seconds such as 2s, 1.5 or 500ms")
        value = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    if not 0.0 < value <= MAX_WINDOW_S:
        raise ValueError(f"{name}: must be more than 0 and at most {MAX_WINDOW_S:g} s")
    return value


def window_starts(duration: float, window: float, stride: float) -> list[float]:
    """Window start times covering ``[0, duration]`` (one window when the video is shorter)."""
    n = 1 + max(0, math.floor((duration - window) / stride + 1e-6))
    if n > MAX_WINDOWS:
        raise ValueError(f"stride: {n} windows exceed the limit of {MAX_WINDOWS}; use a longer stride")
    return [i * stride for i in range(n)]


@dataclass
class Timeline:
    """Per-window class probabilities of one video."""

    video: str
    classes: list[str]
    starts: list[float]
    window_s: float
    stride_s: float
    probs: torch.Tensor            # (windows, classes), averaged over each window's clips x crops
    fps: float
    duration_s: float
    frames_decoded: int
    clips_per_window: int = 1
    crops: int = 1
    warnings: list[str] = field(default_factory=list)

    def ends(self) -> list[float]:
        return [min(s + self.window_s, self.duration_s) for s in self.starts]

    def top(self, k: int = 5) -> list[list[tuple[str, float]]]:
        vals, idx = self.probs.topk(min(k, len(self.classes)), dim=1)
        return [[(self.classes[i], float(v)) for v, i in zip(vr.tolist(), ir.tolist())]
                for vr, ir in zip(vals, idx)]

    def as_dict(self, k: int = 5) -> dict[str, Any]:
        return {"video": self.video, "classes": self.classes, "fps": self.fps,
                "duration_s": self.duration_s, "window_s": self.window_s, "stride_s": self.stride_s,
                "clips_per_window": self.clips_per_window, "crops": self.crops,
                "frames_decoded": self.frames_decoded, "warnings": self.warnings,
                "windows": [{"start_s": round(s, 6), "end_s": round(e, 6),
                             "top": [{"label": c, "probability": p} for c, p in top]}
                            for s, e, top in zip(self.starts, self.ends(), self.top(k))]}

    def to_csv(self, k: int = 5) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["window", "start_s", "end_s", "rank", "label", "probability"])
        for i, (s, e, top) in enumerate(zip(self.starts, self.ends(), self.top(k))):
            for rank, (c, p) in enumerate(top, start=1):
                w.writerow([i, f"{s:.6g}", f"{e:.6g}", rank, c, f"{p:.6f}"])
        return buf.getvalue()


class _Windows:
    """The frame times each window's clips need, and the frames kept for them."""

    def __init__(self, starts: list[float], window: float, fps: float, frames: int, rate: int,
                 clips: int):
        offsets = sample_clip_times(window, fps, frames=frames, rate=rate, num_clips=clips)
        self.times = [[[s + o + i * rate / fps for i in range(frames)] for o in offsets]
                      for s in starts]
        self.tol = 0.25 / fps
        self.buf_t: list[float] = []
        self.buf_x: list[Any] = []     # decoded frames; arrays once a clip used them

    def last_time(self, k: int) -> float:
        return max(t for clip in self.times[k] for t in clip)

    def clips(self, k: int, to_array: Callable[[Any], np.ndarray]) -> list[np.ndarray]:
        """uint8 (T, H, W, 3) per clip of window ``k``: the frame shown at each time (the last
        decoded frame for times past the end); a frame is converted once, when first needed."""
        out = []
        for clip in self.times[k]:
            idx = [max(0, bisect_right(self.buf_t, t + self.tol) - 1) for t in clip]
            for i in idx:
                if not isinstance(self.buf_x[i], np.ndarray):
                    self.buf_x[i] = to_array(self.buf_x[i])
            out.append(np.stack([self.buf_x[i] for i in idx]))
        return out

    def trim(self, k: int) -> None:
        """Drop frames no window from ``k`` on needs (keep the one shown at its first time)."""
        if k >= len(self.times):
            return
        first = min(t for clip in self.times[k] for t in clip)
        cut = max(0, bisect_right(self.buf_t, first + self.tol) - 1)
        del self.buf_t[:cut], self.buf_x[:cut]


def timeline(pr, video: str | Path, *, window: float = 2.0, stride: float = 1.0, clips: int = 1,
             crops: int = 1, batch: int = 8, progress: Progress | None = None) -> Timeline:
    """Score every window of ``video`` with the Predictor ``pr``, decoding each frame once.
    ``progress(fraction, text)`` runs after each batch (it may raise to cancel)."""
    if not 1 <= clips <= 10:
        raise ValueError("clips: must be 1 .. 10 per window")
    tf = pr.transform(crops)
    side = tf.pick_scale()
    warnings: list[str] = []
    with VideoReader(video, threads=0) as reader:
        fps, duration = reader.fps, reader.duration
        starts = window_starts(duration, window, stride)
        span = clip_span_s(pr.frames, pr.rate, fps)
        if span > min(window, duration) + 1e-9:
            warnings.append(f"the model's clip ({span:.2f} s) is longer than the window "
                            f"({min(window, duration):.2f} s): each window's clip reaches past its end")
        plan = _Windows(starts, min(window, duration) if duration > 0 else window, fps,
                        pr.frames, pr.rate, clips)
        scored: list[torch.Tensor] = []
        pending: list[torch.Tensor] = []
        decoded, k = 0, 0

        def flush(final: bool) -> None:
            """Run the model once enough windows wait (a batch of clips), or at the end."""
            if not pending or (not final and len(pending) * clips * crops < batch):
                return
            p = pr.probs(torch.cat(pending), batch=batch)
            scored.extend(p.view(len(pending), clips * crops, -1).mean(1))
            pending.clear()
            if progress is not None:
                progress(len(scored) / len(starts), f"scored {len(scored)}/{len(starts)} windows")

        def emit(k: int) -> None:
            clips_k = plan.clips(k, lambda f: reader.array(f, side))
            pending.append(torch.cat([tf(c, short_side=side) for c in clips_k]))
            flush(False)

        for t, frame in reader.iter_frames():
            decoded += 1
            plan.buf_t.append(t)
            plan.buf_x.append(frame)
            while k < len(starts) and t > plan.last_time(k) + plan.tol:
                emit(k)
                k += 1
                plan.trim(k)
        if not plan.buf_t:
            raise ValueError(f"{Path(video).name}: no frame could be decoded")
        while k < len(starts):
            emit(k)
            k += 1
        flush(True)
    return Timeline(Path(video).name, list(pr.classes), starts, window, stride, torch.stack(scored),
                    fps, duration, decoded, clips, crops, warnings)


# --- command line ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("video")
    p.add_argument("--window", default="2s", help="window length (2s, 1.5, 500ms)")
    p.add_argument("--stride", default="1s", help="time between window starts")
    p.add_argument("--clips", type=int, default=1, help="clips per window (1: the centre one)")
    p.add_argument("--crops", type=int, choices=(1, 3), default=1)
    p.add_argument("--topk", type=int, default=5)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_const", const="json", dest="format")
    fmt.add_argument("--csv", action="store_const", const="csv", dest="format")
    p.add_argument("--out", default=None, help="write here instead of standard output")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--quiet", action="store_true", help="no progress lines on standard error")
    return p


def main(argv: list[str] | None = None) -> int:
    from backend.inference.predictor import ModelLoadError, Predictor
    from backend.data.video import VideoError

    a = build_parser().parse_args(argv)
    try:
        window, stride = parse_seconds(a.window, "--window"), parse_seconds(a.stride, "--stride")
        if not 1 <= a.topk <= 1000:
            raise ValueError("--topk: must be 1 .. 1000")
        device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
        pr = Predictor(a.checkpoint, device=device)

        def report(f: float, text: str) -> None:
            if not a.quiet:
                print(f"{100 * f:5.1f}% {text}", file=sys.stderr, flush=True)
        tl = timeline(pr, a.video, window=window, stride=stride, clips=a.clips, crops=a.crops,
                      progress=report)
    except (ModelLoadError, VideoError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for w in tl.warnings:
        print(f"warning: {w}", file=sys.stderr)
    text = tl.to_csv(a.topk) if a.format == "csv" else json.dumps(tl.as_dict(a.topk), indent=1) + "\n"
    if a.out:
        Path(a.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
