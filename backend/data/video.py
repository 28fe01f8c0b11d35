"""Video decoding and clip sampling (PyAV), as in paper §4.1.

Times are seconds from the video stream's first frame. A clip of ``frames`` frames at
sampling ``rate`` takes every ``rate``-th frame at the video's native (average) frame rate,
chosen by timestamp: the frame shown at ``start + i * rate / fps``, so variable-frame-rate
videos are sampled by time, not by frame index. Decoding seeks to the keyframe before the
clip and decodes forward; it never decodes the whole video for one clip.

Rotation metadata (display matrix, or a legacy ``rotate`` tag) is applied, so frames come
out upright as a player shows them. Flips in the display matrix are ignored.

Short videos loop: a clip that runs past the end wraps around to the start (a video needs at
least 2 decodable frames; fewer raises :class:`TooFewFramesError`).

One module on purpose (about 530 lines): it is the whole path of a clip, file -> frames ->
normalised tensor, and its parts share one reader. ``ClipTransform.load`` asks the reader for
frames already scaled to the shorter edge it picked, ``train_clip`` / ``test_clips`` sample
start times from the reader's duration and fps, and the limits and errors are the reader's
own; every caller (training, evaluation, the predictor, the frame cache, the demo) takes its
``Norm`` and errors from here.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import av
from av.video.reformatter import VideoReformatter
import numpy as np
import torch
import torch.nn.functional as F

from backend.csn.spec import KINETICS_MEAN as MEAN, KINETICS_STD as STD  # 0-1 scale, RGB


class Norm(NamedTuple):
    """Input normalisation: ``(pixel / 255 - mean) / std`` per channel, after reordering the
    decoded RGB frames to ``order``. ``Norm.of(spec)`` reads a spec's input_mean/std/order."""

    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    order: str = "RGB"

    @classmethod
    def of(cls, spec: Any) -> "Norm":
        return cls(tuple(spec.input_mean), tuple(spec.input_std), spec.input_order)

_CONTAINER_MAGIC = (b"\x1a\x45\xdf\xa3", b"RIFF", b"GIF8", b"FLV", b"OggS", b"\x00\x00\x01\xba")


class VideoError(Exception):
    """Base class: the file cannot be used as a video. The message is for people."""


class NotAVideoError(VideoError):
    """The file is not a video at all (text, a still image, unknown data)."""


class CorruptVideoError(VideoError):
    """The file looks like a video but is truncated or damaged."""


class NoVideoStreamError(VideoError):
    """The container has no video stream (e.g. an audio-only file)."""


class TooFewFramesError(VideoError):
    """Fewer than 2 frames can be decoded."""


class VideoTooLargeError(VideoError):
    """The file exceeds a configured size, resolution or duration limit."""


class VideoNotFoundError(VideoError, FileNotFoundError):
    """No file at the path."""


@dataclass(frozen=True)
class Limits:
    """Refuse files beyond these bounds (protects a server from huge uploads)."""

    max_bytes: int = 2 * 1024**3
    max_pixels: int = 4096 * 2304
    max_duration_s: float = 4 * 3600.0


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds. ``width``/``height`` are as displayed (after rotation)."""

    path: str
    duration_s: float
    fps: float
    frames: int  # estimate (container index or duration * fps)
    width: int
    height: int
    rotation: int  # counter-clockwise degrees applied to decoded frames: 0, 90, 180, 270
    codec: str
    container: str


def clip_span_s(frames: int, rate: int, fps: float) -> float:
    """Seconds a clip covers: from its first frame to the end of its last frame."""
    return ((frames - 1) * rate + 1) / fps


def sample_clip_times(
    duration_s: float,
    fps: float,
    *,
    frames: int = 8,
    rate: int = 2,
    num_clips: int = 1,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> list[float]:
    """Clip start times: random (temporal jitter) for training, uniformly spaced for test.

    Test clips span the video evenly (one clip: the centre one). A video shorter than a clip
    gives start 0 (the clip then loops).
    """
    if frames < 1 or rate < 1 or num_clips < 1:
        raise ValueError("frames, rate and num_clips must be >= 1")
    max_start = max(0.0, duration_s - clip_span_s(frames, rate, fps))
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        return [float(x) for x in rng.uniform(0.0, max_start, size=num_clips)]
    if num_clips == 1:
        return [max_start / 2]
    return [max_start * i / (num_clips - 1) for i in range(num_clips)]


def _check_path(path: str | os.PathLike, limits: Limits) -> Path:
    p = Path(path)
    if not p.is_file():
        raise VideoNotFoundError(f"{p}: no such file")
    size = p.stat().st_size
    if size == 0:
        raise NotAVideoError(f"{p.name}: the file is empty")
    if size > limits.max_bytes:
        raise VideoTooLargeError(
            f"{p.name}: {size / 1e6:.0f} MB is larger than the limit of {limits.max_bytes / 1e6:.0f} MB"
        )
    return p


def _looks_like_video(p: Path) -> bool:
    with p.open("rb") as f:
        head = f.read(16)
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide") or head.startswith(_CONTAINER_MAGIC)


def _rotation(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Counter-clockwise degrees (multiple of 90) to turn a decoded frame upright."""
    deg = frame.rotation
    if not deg and "rotate" in stream.metadata:  # legacy tag: clockwise degrees
        try:
            deg = -float(stream.metadata["rotate"])
        except ValueError:
            deg = 0
    return int(round(deg / 90)) % 4 * 90


class VideoReader:
    """An open video for sampling many clips with one open (seek per clip).

    ``threads``: 0 lets FFmpeg pick (frame+slice threading, best for one big video);
    1 decodes on the calling thread (best inside data-loader workers).
    """

    CACHE_BYTES = 32 * 2**20  # a video this small is decoded once and kept for all its clips

    def __init__(self, path: str | os.PathLike, *, limits: Limits = DEFAULT_LIMITS, threads: int = 0):
        p = _check_path(path, limits)
        self.path = p
        # one reformatter per reader: it keeps its swscale context between frames (a new one per
        # frame, as VideoFrame.reformat makes, cost ~0.4 ms of a 64x64 frame's ~0.5 ms)
        self._reformatter = VideoReformatter()
        try:
            self.container = av.open(str(p))
        except av.error.FFmpegError as e:
            if _looks_like_video(p):
                raise CorruptVideoError(f"{p.name}: the video is damaged or truncated ({e.strerror})") from e
            raise NotAVideoError(f"{p.name}: not a video file FFmpeg can read") from e
        try:
            self._init(limits, threads)
        except BaseException:
            self.container.close()
            raise

    def _init(self, limits: Limits, threads: int) -> None:
        c, name = self.container, self.path.name
        fmt = c.format.name
        if fmt == "image2" or fmt.endswith("_pipe"):
            raise NotAVideoError(f"{name}: a still image ({fmt.removesuffix('_pipe')}), not a video")
        streams = [s for s in c.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            raise NoVideoStreamError(f"{name}: the file has no video stream (audio only?)")
        s = self.stream = streams[0]
        cc = s.codec_context
        if cc.width * cc.height > limits.max_pixels:
            raise VideoTooLargeError(
                f"{name}: {cc.width}x{cc.height} exceeds the limit of {limits.max_pixels / 1e6:.1f} megapixels"
            )
        self._threads = threads
        self._configure(s)
        tb = s.time_base
        self.start = float(s.start_time * tb) if s.start_time is not None else 0.0
        rate = s.average_rate or s.guessed_rate or s.base_rate
        self.fps = float(rate) if rate and 0 < float(rate) < 1000 else 0.0
        # the container's frame count, when it is believable: a raw elementary stream has none,
        # and libav has been seen to report an uninitialised one (7.3e18) for it
        nb_frames = s.frames if 0 < (s.frames or 0) <= limits.max_duration_s * 1000 else 0
        if s.duration:
            duration = float(s.duration * tb)
        elif c.duration:
            duration = c.duration / av.time_base - max(0.0, self.start - (c.start_time or 0) / av.time_base)
        elif nb_frames and self.fps:
            duration = nb_frames / self.fps
        else:
            duration = self._demux_duration()
        if duration > limits.max_duration_s:
            raise VideoTooLargeError(
                f"{name}: {duration / 60:.0f} min is longer than the limit of {limits.max_duration_s / 60:.0f} min"
            )
        if nb_frames and duration > 0:  # the true average rate (GIF headers round it)
            self.fps = nb_frames / duration
        frames = nb_frames or (round(duration * self.fps) if self.fps else 0)
        if not self.fps:
            self.fps = 25.0
        lead = self._leading_frames()
        self.decodable = len(lead)  # 0, 1 or 2 (= enough)
        self.rotation = _rotation(lead[0], s) if lead else 0
        w, h = (cc.width, cc.height) if self.rotation % 180 == 0 else (cc.height, cc.width)
        self.info = VideoInfo(str(self.path), duration, self.fps, frames, w, h, self.rotation, cc.name, fmt)
        self.duration = duration
        self._cache: list[tuple[float, av.VideoFrame]] | None = None
        self._cache_frames = frames if cc.width * cc.height * 3 // 2 * frames <= self.CACHE_BYTES else 0

    def _configure(self, s: av.video.stream.VideoStream) -> None:
        s.thread_type = "AUTO" if self._threads != 1 else "SLICE"
        s.thread_count = self._threads

    def _rewind(self) -> None:
        """Back to the start: seek, or reopen a container that cannot seek (raw streams)."""
        try:
            self.container.seek(0)
        except av.error.FFmpegError:
            index = self.stream.index
            self.container.close()
            self.container = av.open(str(self.path))
            self.stream = next(st for st in self.container.streams.video if st.index == index)
            self._configure(self.stream)

    def _demux_duration(self) -> float:
        """Duration from packet timestamps (or count), for streams whose headers do not say."""
        end, n = 0.0, 0
        for pkt in self.container.demux(self.stream):
            n += pkt.size > 0
            if pkt.pts is not None:
                end = max(end, float((pkt.pts + (pkt.duration or 0)) * self.stream.time_base) - self.start)
        self._rewind()
        return end or n / (self.fps or 25.0)

    def _leading_frames(self, stop: int = 2) -> list[av.VideoFrame]:
        """Up to ``stop`` frames from the start (rotation; enough frames to make a clip)."""
        out = []
        for _, frame in self._decode_from(0.0):
            out.append(frame)
            if len(out) >= stop:
                break
        return out

    def _decode_from(self, t: float):
        """Yield (time, frame) from the keyframe at or before ``t`` onwards."""
        s = self.stream
        try:
            self.container.seek(int((t + self.start) / s.time_base), stream=s, backward=True, any_frame=False)
        except av.error.FFmpegError:
            self._rewind()  # not seekable by timestamp: decode from the start
            s = self.stream
        last = None
        try:
            for frame in self.container.decode(s):
                if frame.pts is not None:
                    ft = float(frame.time) - self.start
                else:
                    ft = last + 1 / self.fps if last is not None else 0.0
                last = ft
                yield ft, frame
        except av.error.FFmpegError as e:
            if last is None:
                raise CorruptVideoError(f"{self.path.name}: the video data cannot be decoded ({e.strerror})") from e
            # a damaged tail: keep what decoded (the caller holds the last good frame)

    def _frames_from(self, t: float, tol: float):
        """(time, frame) from about ``t``: the cached frames of a small video, else a seek."""
        if self._cache is None and self._cache_frames:
            limit = 2 * self._cache_frames + 8  # the frame count is an estimate
            frames = [x for _, x in zip(range(limit + 1), self._decode_from(0.0))]
            self._cache, self._cache_frames = (frames, 0) if len(frames) <= limit else (None, 0)
        if self._cache is None:
            return self._decode_from(t)
        i = bisect_right([ft for ft, _ in self._cache], t + tol) - 1
        return iter(self._cache[max(i, 0) :])

    def _frames_at(self, times: list[float]) -> list[av.VideoFrame]:
        """The frame shown at each time (increasing); times past the last frame hold it."""
        tol = 0.25 / self.fps
        for t0 in [times[0], 0.0] if times[0] > 0 else [0.0]:
            out: list[av.VideoFrame] = []
            prev = None
            for ft, frame in self._frames_from(t0, tol):
                if prev is None and t0 > 0 and ft > times[0] + tol:
                    break  # the seek landed after the clip start: retry from the beginning
                while len(out) < len(times) and ft > times[len(out)] + tol:
                    out.append(prev if prev is not None else frame)
                if len(out) == len(times):
                    return out
                prev = frame
            else:
                if prev is not None:
                    return out + [prev] * (len(times) - len(out))
        raise CorruptVideoError(f"{self.path.name}: no frame near {times[0]:.2f}s can be decoded")

    def _to_array(self, frame: av.VideoFrame, short_side: int | None) -> np.ndarray:
        w, h = frame.width, frame.height
        if short_side and short_side != min(w, h):
            f = short_side / min(w, h)
            w, h = max(1, round(w * f)), max(1, round(h * f))
        a = self._reformatter.reformat(frame, width=w, height=h, format="rgb24",
                                       interpolation="BILINEAR").to_ndarray()
        return np.rot90(a, self.rotation // 90) if self.rotation else a

    def clip(self, start_s: float, frames: int = 8, rate: int = 2, *, short_side: int | None = None) -> np.ndarray:
        """uint8 (T, H, W, 3) RGB, upright; ``short_side`` rescales the shorter edge to it."""
        if frames < 1 or rate < 1:
            raise ValueError("frames and rate must be >= 1")
        if self.decodable < 2:
            what = "no decodable frames" if self.decodable == 0 else "only 1 decodable frame"
            raise TooFewFramesError(f"{self.path.name}: the video has {what}; a clip needs at least 2")
        period = self.duration if self.duration > 0 else float("inf")
        times = [(start_s + i * rate / self.fps) % period for i in range(frames)]
        # split into increasing runs (a looping clip wraps to the start), one seek each
        runs: list[list[float]] = []
        for t in times:
            if runs and t >= runs[-1][-1]:
                runs[-1].append(t)
            else:
                runs.append([t])
        decoded = [f for run in runs for f in self._frames_at(run)]
        cache: dict[int, np.ndarray] = {}
        arrays = [cache.setdefault(id(f), self._to_array(f, short_side)) for f in decoded]
        return np.ascontiguousarray(np.stack(arrays))

    def iter_frames(self):
        """Every frame from the start, each decoded once and in order: ``(time_s, frame)``;
        :meth:`array` converts the frames that are needed."""
        yield from self._decode_from(0.0)

    def array(self, frame: av.VideoFrame, short_side: int | None = None) -> np.ndarray:
        """uint8 (H, W, 3) RGB upright of a decoded frame, ``short_side`` as in :meth:`clip`."""
        return self._to_array(frame, short_side)

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe(path: str | os.PathLike, *, limits: Limits = DEFAULT_LIMITS) -> VideoInfo:
    """Duration, frame rate, size (as displayed), rotation and codec of a video."""
    with VideoReader(path, limits=limits, threads=1) as r:
        return r.info


def decode_clip(
    path: str | os.PathLike,
    start_s: float,
    frames: int = 8,
    rate: int = 2,
    *,
    short_side: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    threads: int = 0,
) -> np.ndarray:
    """Decode one clip: uint8 (T, H, W, 3) RGB, every ``rate``-th frame from ``start_s``."""
    with VideoReader(path, limits=limits, threads=threads) as r:
        return r.clip(start_s, frames, rate, short_side=short_side)


@dataclass
class ClipTransform:
    """Scale the shorter edge to s, crop S x S, normalise with ``norm`` (paper §4.1).

    Training: s uniform in ``scale`` and a random crop. Test: s = ``test_scale`` and a centre
    crop, or 3 crops (left/centre/right along the longer side). The defaults keep the
    paper's ratios (crop 224 from s in [256, 320], test s = 256) for any ``size``.
    No horizontal flip: it would swap left/right motion classes.
    """

    size: int = 112
    train: bool = False
    scale: tuple[int, int] | None = None
    test_scale: int | None = None
    crops: int = 1
    norm: Norm = Norm()
    _mean: torch.Tensor = field(init=False, repr=False)
    _std: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.scale is None:
            self.scale = (round(self.size * 256 / 224), round(self.size * 320 / 224))
        if self.test_scale is None:
            self.test_scale = round(self.size * 256 / 224)
        lo, hi = self.scale
        if not self.size <= lo <= hi or self.test_scale < self.size:
            raise ValueError(f"scales {self.scale}/{self.test_scale} must be >= crop size {self.size}")
        if self.crops not in (1, 3):
            raise ValueError("crops must be 1 or 3")
        if self.norm.order not in ("RGB", "BGR"):
            raise ValueError(f"channel order must be RGB or BGR, got {self.norm.order!r}")
        self._mean = torch.tensor(self.norm.mean, dtype=torch.float32).view(-1, 1, 1, 1)
        self._std = torch.tensor(self.norm.std, dtype=torch.float32).view(-1, 1, 1, 1)

    def pick_scale(self, rng: np.random.Generator | None = None) -> int:
        """The shorter-edge size s for one clip (random in training)."""
        if not self.train:
            return self.test_scale
        rng = rng if rng is not None else np.random.default_rng()
        return int(rng.integers(self.scale[0], self.scale[1] + 1))

    def __call__(
        self, clip: np.ndarray, rng: np.random.Generator | None = None, short_side: int | None = None
    ) -> torch.Tensor:
        """uint8 (T, H, W, 3) -> float (crops, 3, T, S, S)."""
        s = short_side or self.pick_scale(rng)
        x = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).float()  # (3,T,H,W)
        h, w = x.shape[-2:]
        if min(h, w) != s:
            f = s / min(h, w)
            size = (max(s, round(h * f)), max(s, round(w * f)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            h, w = size
        S = self.size
        if self.train:
            rng = rng if rng is not None else np.random.default_rng()
            offsets = [(int(rng.integers(0, h - S + 1)), int(rng.integers(0, w - S + 1)))]
        else:
            cy, cx = (h - S) // 2, (w - S) // 2
            if self.crops == 1:
                offsets = [(cy, cx)]
            elif w >= h:  # left / centre / right along the longer side
                offsets = [(cy, 0), (cy, cx), (cy, w - S)]
            else:  # top / centre / bottom
                offsets = [(0, cx), (cy, cx), (h - S, cx)]
        out = torch.stack([x[:, :, y : y + S, z : z + S] for y, z in offsets])
        if self.norm.order == "BGR":
            out = out.flip(1)
        return (out / 255.0 - self._mean) / self._std

    def load(
        self,
        reader: VideoReader,
        start_s: float,
        frames: int,
        rate: int,
        rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """Decode a clip already scaled by the decoder, then crop/normalise: (crops, 3, T, S, S)."""
        s = self.pick_scale(rng)
        return self(reader.clip(start_s, frames, rate, short_side=s), rng, short_side=s)


def train_clip(
    path: str | os.PathLike,
    transform: ClipTransform,
    *,
    frames: int = 8,
    rate: int = 2,
    rng: np.random.Generator | None = None,
    limits: Limits = DEFAULT_LIMITS,
    threads: int = 1,
) -> torch.Tensor:
    """One randomly placed, scaled and cropped clip: float (3, T, S, S)."""
    rng = rng if rng is not None else np.random.default_rng()
    with VideoReader(path, limits=limits, threads=threads) as r:
        (start,) = sample_clip_times(r.duration, r.fps, frames=frames, rate=rate, train=True, rng=rng)
        return transform.load(r, start, frames, rate, rng)[0]


def test_clips(
    path: str | os.PathLike,
    *,
    frames: int = 8,
    rate: int = 2,
    size: int = 112,
    num_clips: int = 10,
    crops: int = 1,
    test_scale: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
    threads: int = 0,
    norm: Norm | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Paper test sampling: ``num_clips`` uniformly spaced clips x ``crops`` crops.

    Returns float (num_clips * crops, 3, T, S, S), clip-major (clip 0's crops first),
    normalised with ``norm`` (default: Kinetics mean/std, RGB). ``progress(done, total)`` runs
    after each decoded clip (it may raise to cancel).
    """
    tf = ClipTransform(size=size, train=False, test_scale=test_scale, crops=crops, norm=norm or Norm())
    with VideoReader(path, limits=limits, threads=threads) as r:
        starts = sample_clip_times(r.duration, r.fps, frames=frames, rate=rate, num_clips=num_clips)
        out = []
        for i, t in enumerate(starts):
            out.append(tf.load(r, t, frames, rate))
            if progress is not None:
                progress(i + 1, len(starts))
        return torch.cat(out)

