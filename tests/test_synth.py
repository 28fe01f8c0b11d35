"""backend.synth: the generated motion dataset (real H.264 files) and its class semantics."""

import csv
import dataclasses
import math

import numpy as np
import pytest

from backend import synth
from backend.data import video
from backend.data.encode import write_video


def test_generate_layout_csv_and_files(tmp_path, capsys):
    rc = synth.main(["--out", str(tmp_path), "--per-class", "4", "--seed", "3", "--size", "32",
                     "--frames", "8", "--splits", "train=0.5,val=0.25,test=0.25"])
    assert rc == 0 and "wrote 32 videos (train 16, val 8, test 8)" in capsys.readouterr().out
    assert (tmp_path / "classes.txt").read_text().split() == list(synth.CLASSES)
    for split, n in [("train", 2), ("val", 1), ("test", 1)]:
        rows = list(csv.DictReader((tmp_path / f"{split}.csv").open()))
        assert len(rows) == n * len(synth.CLASSES)
        assert {r["label"] for r in rows} == set(synth.CLASSES)
        for r in rows:
            assert r["path"].startswith(f"{split}/{r['label']}/") and r["path"].endswith(".mp4")
    info = video.probe(tmp_path / rows[0]["path"])
    assert (info.width, info.height, info.frames, info.codec) == (32, 32, 8, "h264")
    assert info.fps == pytest.approx(15)


def test_deterministic_bytes(tmp_path):
    kw = dict(size=32, frames=6, splits={"train": 1.0}, classes=synth.CLASSES[:3])
    synth.generate(tmp_path / "a", 2, seed=7, **kw)
    synth.generate(tmp_path / "b", 2, seed=7, **kw)
    synth.generate(tmp_path / "c", 2, seed=8, **kw)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.mp4"))
    assert len(files) == 6
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files)


@pytest.mark.parametrize("difficulty", list(synth.DIFFICULTIES))
def test_first_frame_does_not_reveal_class(difficulty):
    """The i-th video of every class shares its appearance: the first frames are identical,
    so no statistic of a first frame can separate the classes; later frames differ by motion."""
    for i in range(3):
        clips = [synth.render(synth.make_scene(c, (0, 0, i), size=32, frames=8, difficulty=difficulty))
                 for c in synth.CLASSES]
        assert all(np.array_equal(clips[0][0], c[0]) for c in clips)
        last = {c[-1].tobytes() for c in clips}
        assert len(last) == len(synth.CLASSES)


def plain(scene: synth.Scene, **motion) -> synth.Scene:
    """The scene's target alone on black, centred, no noise."""
    t = dataclasses.replace(scene.target, x=32.0, y=32.0, radius=10.0, kind="circle",
                            colours=(np.full(3, 250.0), np.full(3, 120.0)))
    return dataclasses.replace(scene, size=64, frames=3, background=np.zeros((64, 64, 3), np.float32),
                               distractors=(), target=t, noise=0.0, **motion)


def stripe_angle(frame: np.ndarray) -> float:
    """Screen angle (counter-clockwise, mod pi) of the stripes' normal, from the structure tensor."""
    g = frame[..., 0].astype(float)
    gy, gx = np.gradient(g)
    x, y, _ = target_stats(frame)
    yy, xx = np.mgrid[0:64, 0:64]
    inner = np.hypot(xx - x, yy - y) < 7  # ignore the disc's rim
    a = 0.5 * math.atan2(2 * (gx * gy)[inner].sum(), (gx * gx - gy * gy)[inner].sum())
    return -a  # array y points down


def target_stats(frame: np.ndarray) -> tuple[float, float, int]:
    ys, xs = np.nonzero(frame[..., 0] > 60)
    return xs.mean(), ys.mean(), len(xs)


def test_class_semantics():
    for label in synth.CLASSES:
        s = synth.make_scene(label, (1, 0, 5))
        f = synth.render(plain(s, velocity=s.velocity, spin=s.spin, zoom=s.zoom))
        (x0, y0, a0), (x1, y1, a1) = target_stats(f[0]), target_stats(f[2])
        dx, dy = x1 - x0, y1 - y0
        turn = (stripe_angle(f[2]) - stripe_angle(f[0]) + math.pi / 2) % math.pi - math.pi / 2
        kind, _, d = label.partition("-")
        if kind == "move":
            want = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[d]
            assert dx * want[0] + dy * want[1] > 1.0 and a1 == pytest.approx(a0, rel=0.05), label
        elif kind == "rotate":
            assert math.degrees(turn) * (1 if d == "ccw" else -1) > 5, label  # 8-20 degrees
            assert abs(dx) + abs(dy) < 0.5
        else:
            assert (a1 / a0 - 1) * (1 if d == "in" else -1) > 0.05, label
        if kind != "rotate":
            assert abs(math.degrees(turn)) < 1, label


def test_easy_has_wide_stripes_and_faster_spin_hard_is_unchanged():
    easy = synth.DIFFICULTIES["easy"]
    for i in range(10):
        h = synth.make_scene("rotate-cw", (0, 0, i), size=32, difficulty="hard")
        e = synth.make_scene("rotate-cw", (0, 0, i), size=32, difficulty="easy")
        assert 1.5 <= h.target.stripes <= 3.0 and 0.6 <= e.target.stripes <= 1.2
        assert e.spin == pytest.approx(h.spin * easy.motion * easy.spin) and h.spin < 0
    # hard is the original data: its recorded video (the shipped model's) still comes out
    assert synth.make_scene("move-up", (1, 0, 5)).target.stripes == pytest.approx(1.97395, abs=1e-5)


def test_zoom_in_stays_about_frame_sized():
    for i in range(20):
        s = synth.make_scene("zoom-in", (0, 0, i), size=64, frames=32)
        assert s.target.radius * s.zoom ** 31 <= 0.45 * 64 + 1e-6 or s.zoom ** 31 == pytest.approx(1.5)


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown class"):
        synth.make_scene("jump", (0,))
    with pytest.raises(ValueError, match="even"):
        synth.generate(tmp_path, 2, size=33)
    assert synth.main(["--out", str(tmp_path), "--per-class", "2", "--splits", "train=0.5,val=0.2"]) == 2
    assert "error: splits must be fractions" in capsys.readouterr().err
    with pytest.raises(ValueError, match="even width"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown codec"):
        write_video(tmp_path / "x.flv", np.zeros((2, 32, 32, 3), np.uint8))
