"""Write real video files with PyAV (synthetic data, test fixtures, demo examples)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# extension -> (codec, pixel format); codec names accepted by ``write_video(codec=...)``
_BY_EXT = {
    ".mp4": "h264",
    ".mov": "h264",
    ".mkv": "h264",
    ".webm": "vp9",
    ".avi": "mpeg4",
    ".gif": "gif",
}
_CODECS = {
    "h264": ("libx264", "yuv420p"),
    "vp9": ("libvpx-vp9", "yuv420p"),
    "mpeg4": ("mpeg4", "yuv420p"),
    "gif": ("gif", "rgb8"),
}


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Sequence[np.ndarray],
    fps: float = 15,
    *,
    codec: str | None = None,
    times: Sequence[float] | None = None,
    rotation: int | None = None,
    gop: int | None = None,
    crf: int = 18,
) -> Path:
    """Encode RGB uint8 frames (T, H, W, 3) to ``path``; the container follows the extension.

    ``codec``: h264 (mp4/mov/mkv default), vp9 (webm), mpeg4 (avi), gif. ``times``: per-frame
    timestamps in seconds for variable frame rate. ``rotation``: display-matrix rotation,
    counter-clockwise degrees (a player turns the stored frames by it). ``gop``: keyframe
    interval. Encoding is single-threaded, so the same frames give the same bytes.
    """
    path = Path(path)
    codec = codec or _BY_EXT.get(path.suffix.lower())
    if codec not in _CODECS:
        raise ValueError(f"unknown codec {codec!r} for {path.name}; one of {sorted(_CODECS)}")
    frames = _checked_frames(frames, codec, times)
    fps_q = Fraction(fps).limit_denominator(1001)
    tb = Fraction(1, 1000) if times is not None else 1 / fps_q
    with av.open(str(path), "w") as c:
        s = _video_stream(c, codec, frames[0].shape[:2], fps_q, tb, crf=crf, gop=gop,
                          rotation=rotation)
        for i, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = round(times[i] / tb) if times is not None else i
            f.time_base = tb
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _checked_frames(frames: np.ndarray | Sequence[np.ndarray], codec: str,
                    times: Sequence[float] | None) -> list[np.ndarray]:
    """The frames as contiguous uint8 arrays, refused when the codec or ``times`` cannot
    take them."""
    frames = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    if not frames:
        raise ValueError("no frames to write")
    h, w = frames[0].shape[:2]
    if _CODECS[codec][1] == "yuv420p" and (h % 2 or w % 2):
        raise ValueError(f"{codec} with yuv420p needs even width and height, got {w}x{h}")
    if times is not None and len(times) != len(frames):
        raise ValueError("times must give one timestamp per frame")
    return frames


def _video_stream(c, codec: str, size: tuple[int, int], fps_q: Fraction, tb: Fraction, *,
                  crf: int, gop: int | None, rotation: int | None):
    """The container's video stream, single-threaded, with the codec's quality options."""
    name, pix_fmt = _CODECS[codec]
    s = c.add_stream(name, rate=fps_q)
    h, w = size
    s.width, s.height, s.pix_fmt = w, h, pix_fmt
    s.thread_count = 1
    opts = {}
    if name == "libx264":
        opts = {"crf": str(crf), "preset": "veryfast"}
    elif name == "libvpx-vp9":
        opts = {"crf": str(crf + 12), "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "0"}
    elif name == "mpeg4":
        opts = {"qscale": "3"}
        s.codec_context.qscale = 3
    if opts:
        s.options = opts
    if gop:
        s.codec_context.gop_size = gop
    s.codec_context.time_base = tb
    if rotation:
        s.set_display_rotation(rotation)
    return s
