"""backend.data.video on real files written with PyAV in tmp_path (several containers/codecs)."""

import subprocess

import av
import numpy as np
import pytest
import torch

from backend.data import video as V
from backend.data.encode import write_video


@pytest.fixture(params=["seek", "cached"])
def mode(request, monkeypatch):
    """Run a test both ways: seeking per clip, and the decode-once cache for small videos."""
    if request.param == "seek":
        monkeypatch.setattr(V.VideoReader, "CACHE_BYTES", 0)
    return request.param


def index_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames whose two flat halves encode the frame index (robust to lossy codecs)."""
    out = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i, :, : w // 2] = (i // 16) * 16 + 8
        out[i, :, w // 2 :] = (i % 16) * 16 + 8
    return out


def frame_index(a: np.ndarray) -> int:
    w = a.shape[1]
    hi, lo = ((a[:, : w // 2].mean() - 8) / 16, (a[:, w // 2 :].mean() - 8) / 16)
    return int(round(hi)) * 16 + int(round(lo))


def indices(clip: np.ndarray) -> list[int]:
    return [frame_index(f) for f in clip]


def full_decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.mark.parametrize("ext", ["mp4", "webm", "mkv", "avi", "mov", "gif"])
def test_containers_probe_and_clip(tmp_path, ext, mode):
    p = write_video(tmp_path / f"v.{ext}", index_frames(60), fps=15, gop=12)
    info = V.probe(p)
    assert (info.width, info.height, info.rotation) == (64, 48, 0)
    assert info.duration_s == pytest.approx(4.0, abs=0.07)
    assert info.fps == pytest.approx(15, rel=0.02)
    assert info.frames == pytest.approx(60, abs=1)
    clip = V.decode_clip(p, 1.0, frames=8, rate=2)
    assert clip.shape == (8, 48, 64, 3) and clip.dtype == np.uint8
    got = indices(clip)
    if ext == "gif":  # GIF stores delays in 1/100 s, so 15 fps timestamps are rounded
        assert all(abs(g - e) <= 1 for g, e in zip(got, range(15, 31, 2)))
    else:
        assert got == list(range(15, 31, 2))


def test_seek_matches_full_decode(tmp_path, mode):
    """Clips decoded by seeking equal the same frames of a full sequential decode."""
    p = write_video(tmp_path / "long.mp4", index_frames(150), fps=30, gop=25)
    full = full_decode(p)
    rng = np.random.default_rng(0)
    with V.VideoReader(p, threads=1) as r:
        for start in [0.0, 0.5, 1.0, 2.34, 4.0 - 15 / 30] + list(rng.uniform(0, 4.4, 6)):
            first = int(np.floor(start * 30 + 0.25))
            clip = r.clip(start, frames=8, rate=2)
            want = [(first + 2 * i) % 150 for i in range(8)]
            assert indices(clip) == want
            assert np.array_equal(clip, np.stack([full[i] for i in want]))
        assert (r._cache is not None) == (mode == "cached")


def test_threaded_decode_equals_single_thread(tmp_path, mode):
    p = write_video(tmp_path / "v.mp4", index_frames(90), fps=30, gop=30)
    assert np.array_equal(V.decode_clip(p, 1.3, threads=0), V.decode_clip(p, 1.3, threads=1))


def test_vfr_sampled_by_time(tmp_path, mode):
    n = 40
    gaps = np.where(np.arange(n) % 3 == 0, 0.1, 1 / 30)  # irregular frame durations
    times = np.concatenate([[0.0], np.cumsum(gaps)[:-1]]).round(3)
    p = write_video(tmp_path / "vfr.mkv", index_frames(n), fps=15, times=times)
    with V.VideoReader(p) as r:
        fps = r.fps
        for start in [0.0, 0.37, 0.9]:
            clip = r.clip(start, frames=6, rate=1)
            targets = [start + i / fps for i in range(6)]
            want = [int(np.searchsorted(times, t + 0.25 / fps, side="right")) - 1 for t in targets]
            assert indices(clip) == want
    assert len(set(np.diff(want))) > 1  # genuinely irregular in frame-index terms


def ffmpeg_rgb(path, w, h) -> np.ndarray:
    """The first frame as ffmpeg shows it (ffmpeg applies rotation by default)."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, np.uint8).reshape(h, w, 3)


def marked_frames(n=4, h=32, w=64) -> np.ndarray:
    a = np.zeros((n, h, w, 3), np.uint8)
    a[:, : h // 2, : w // 4] = 255  # a white block in the top-left corner
    a[:, h // 2 :, w // 2 :, 0] = 200  # red bottom-right
    return a


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_display_matrix(tmp_path, rotation):
    p = write_video(tmp_path / "rot.mp4", marked_frames(), fps=10, rotation=rotation)
    info = V.probe(p)
    w, h = (64, 32) if rotation == 180 else (32, 64)
    assert (info.width, info.height, info.rotation) == (w, h, rotation % 360)
    clip = V.decode_clip(p, 0.0, frames=2, rate=1)
    assert clip.shape == (2, h, w, 3)
    assert np.abs(clip[0].astype(int) - ffmpeg_rgb(p, w, h)).mean() < 3
    assert np.abs(clip[0].astype(int) - np.rot90(marked_frames()[0], rotation // 90)).mean() < 3


def test_rotation_legacy_tag(tmp_path):
    src = write_video(tmp_path / "src.mp4", marked_frames(), fps=10)
    p = tmp_path / "tag.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(src), "-c", "copy", "-metadata:s:v", "rotate=90", str(p)], check=True
    )
    clip = V.decode_clip(p, 0.0, frames=2, rate=1)
    assert clip.shape == (2, 64, 32, 3)
    assert np.abs(clip[0].astype(int) - ffmpeg_rgb(p, 32, 64)).mean() < 3


def test_short_video_loops(tmp_path, mode):
    p = write_video(tmp_path / "short.mp4", index_frames(3), fps=10)
    assert indices(V.decode_clip(p, 0.0, frames=8, rate=1)) == [0, 1, 2, 0, 1, 2, 0, 1]
    two = write_video(tmp_path / "two.webm", index_frames(2), fps=10)
    assert indices(V.decode_clip(two, 0.0, frames=4, rate=1)) == [0, 1, 0, 1]


def test_short_side_scaling(tmp_path):
    p = write_video(tmp_path / "v.mp4", index_frames(20, h=48, w=64), fps=10)
    clip = V.decode_clip(p, 0.0, frames=4, rate=1, short_side=24)
    assert clip.shape == (4, 24, 32, 3)
    assert indices(clip) == [0, 1, 2, 3]


# --- errors -------------------------------------------------------------------------------


def write_audio_only(path):
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def test_error_not_a_video(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    with pytest.raises(V.NotAVideoError, match="not a video"):
        V.probe(tmp_path / "notes.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(V.NotAVideoError, match="empty"):
        V.decode_clip(tmp_path / "empty.mp4", 0.0)
    png = tmp_path / "still.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=red:s=32x32", "-frames:v", "1", str(png)], check=True)
    with pytest.raises(V.NotAVideoError, match="still image"):
        V.probe(png)
    with pytest.raises(V.VideoNotFoundError, match="no such file"):
        V.probe(tmp_path / "missing.mp4")
    with pytest.raises(FileNotFoundError):
        V.probe(tmp_path / "missing.mp4")


def test_error_truncated_and_corrupt(tmp_path):
    p = write_video(tmp_path / "v.mp4", index_frames(60), fps=15)
    data = p.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(V.CorruptVideoError, match="damaged or truncated"):
        V.probe(tmp_path / "cut.mp4")
    (tmp_path / "junk.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    with pytest.raises(V.CorruptVideoError):
        V.probe(tmp_path / "junk.mkv")


def test_error_no_video_stream(tmp_path):
    p = tmp_path / "audio.m4a"
    write_audio_only(p)
    with pytest.raises(V.NoVideoStreamError, match="no video stream"):
        V.probe(p)


def test_error_too_few_frames(tmp_path):
    p = write_video(tmp_path / "one.mp4", index_frames(1), fps=10)
    assert V.probe(p).frames == 1
    with pytest.raises(V.TooFewFramesError, match="only 1 decodable frame"):
        V.decode_clip(p, 0.0)
    with pytest.raises(V.TooFewFramesError):
        V.test_clips(write_video(tmp_path / "one.gif", index_frames(1), fps=10), size=16)


def test_error_too_large(tmp_path):
    p = write_video(tmp_path / "v.mp4", index_frames(30), fps=15)
    with pytest.raises(V.VideoTooLargeError, match="MB"):
        V.probe(p, limits=V.Limits(max_bytes=100))
    with pytest.raises(V.VideoTooLargeError, match="megapixels"):
        V.decode_clip(p, 0.0, limits=V.Limits(max_pixels=1000))
    with pytest.raises(V.VideoTooLargeError, match="longer than"):
        V.test_clips(p, limits=V.Limits(max_duration_s=1.0))
    assert issubclass(V.VideoTooLargeError, V.VideoError)


# --- sampling and transforms ---------------------------------------------------------------


def test_sample_clip_times():
    span = V.clip_span_s(8, 2, 15)
    assert span == pytest.approx(15 / 15)
    assert V.sample_clip_times(11.0, 15, frames=8, rate=2, num_clips=3) == pytest.approx([0, 5, 10])
    assert V.sample_clip_times(11.0, 15, frames=8, rate=2) == pytest.approx([5])
    assert V.sample_clip_times(0.5, 15, frames=8, rate=2, num_clips=2) == [0.0, 0.0]
    rng = np.random.default_rng(1)
    starts = V.sample_clip_times(11.0, 15, frames=8, rate=2, num_clips=200, train=True, rng=rng)
    assert 0 <= min(starts) and max(starts) <= 10 and np.std(starts) > 2


def test_clip_transform_normalises_and_crops():
    colour = (np.array(V.MEAN) * 255).round().astype(np.uint8)
    clip = np.broadcast_to(colour, (4, 40, 80, 3)).copy()
    out = V.ClipTransform(size=32, test_scale=40)(clip)
    assert out.shape == (1, 3, 4, 32, 32) and out.abs().max() < 0.02
    # 3 crops along the longer (horizontal) side: left, centre, right
    ramp = np.broadcast_to(np.linspace(0, 255, 80).astype(np.uint8)[None, None, :, None], (4, 40, 80, 3)).copy()
    crops = V.ClipTransform(size=32, test_scale=40, crops=3)(ramp)
    means = crops.mean(dim=(1, 2, 3, 4))
    assert crops.shape == (3, 3, 4, 32, 32) and means[0] < means[1] < means[2]
    x = torch.from_numpy(ramp).permute(3, 0, 1, 2).float() / 255
    want_left = (x[:, :, 4:36, 0:32] - torch.tensor(V.MEAN).view(3, 1, 1, 1)) / torch.tensor(V.STD).view(3, 1, 1, 1)
    assert torch.allclose(crops[0], want_left, atol=1e-5)


def test_clip_transform_train_random_but_seeded():
    clip = np.random.default_rng(0).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    tf = V.ClipTransform(size=32, train=True, scale=(36, 48))
    a = tf(clip, np.random.default_rng(5))
    assert a.shape == (1, 3, 4, 32, 32)
    assert torch.equal(a, tf(clip, np.random.default_rng(5)))
    assert not torch.equal(a, tf(clip, np.random.default_rng(6)))
    with pytest.raises(ValueError, match="crop size"):
        V.ClipTransform(size=64, scale=(32, 40))


def test_test_clips_and_train_clip(tmp_path):
    p = write_video(tmp_path / "v.webm", index_frames(90, h=48, w=64), fps=30)
    x = V.test_clips(p, frames=8, rate=2, size=32, num_clips=4, crops=3)
    assert x.shape == (12, 3, 8, 32, 32) and x.dtype == torch.float32
    assert not torch.equal(x[0], x[3])  # different clips
    y = V.train_clip(p, V.ClipTransform(size=32, train=True), frames=8, rate=2, rng=np.random.default_rng(3))
    assert y.shape == (3, 8, 32, 32)
    assert torch.equal(y, V.train_clip(p, V.ClipTransform(size=32, train=True), rng=np.random.default_rng(3)))


def test_raw_stream_without_timestamps(tmp_path, mode):
    """A raw H.264 elementary stream cannot seek and has no timing: FFmpeg's 25 fps is assumed
    (as ffmpeg does), and the reader reopens the file to rewind."""
    src = write_video(tmp_path / "v.mp4", index_frames(60), fps=15)
    raw = tmp_path / "v.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-c", "copy", "-f", "h264", str(raw)], check=True)
    info = V.probe(raw)
    assert (info.fps, info.frames, info.duration_s) == (25.0, 60, pytest.approx(2.4))
    with V.VideoReader(raw, threads=1) as r:
        assert indices(r.clip(1.0, 8, 2)) == list(range(25, 41, 2))
        assert indices(r.clip(0.2, 4, 1)) == [5, 6, 7, 8]
        assert indices(r.clip(2.3, 4, 1)) == [57, 58, 59, 0]  # loops


def test_error_cover_art_is_not_video(tmp_path):
    """An mp3 with an embedded cover picture has a 'video' stream that is only a picture."""
    png, mp3 = tmp_path / "cover.png", tmp_path / "song.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=red:s=32x32", "-frames:v", "1", str(png)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-i", str(png), "-map", "0", "-map", "1",
                    "-c:v", "png", "-disposition:v", "attached_pic", str(mp3)], check=True)
    with pytest.raises(V.NoVideoStreamError):
        V.probe(mp3)
