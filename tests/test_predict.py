"""Long videos: window-by-window prediction (backend.predict) with the shipped motion model."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.data.encode import write_video
from backend.inference.predictor import Predictor
from backend.predict import main, parse_seconds, timeline, window_starts
from backend.synth import make_scene, render
from backend.data.video import VideoReader, sample_clip_times

SHIPPED = Path(__file__).resolve().parents[1] / "backend" / "assets" / "motion_csn.pt"
FIRST, SECOND, CHANGE_S, FPS = "move-up", "move-down", 4.0, 15


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(SHIPPED)


@pytest.fixture(scope="module")
def two_motions(tmp_path_factory) -> Path:
    """4 s of one motion then 4 s of another, same scene (checked by hand: the shipped model
    names each half's windows right with a wide margin at this seed)."""
    frames = [render(make_scene(label, (3, 0, 7), size=64, frames=int(CHANGE_S * FPS)))
              for label in (FIRST, SECOND)]
    return write_video(tmp_path_factory.mktemp("long") / "two.mp4", np.concatenate(frames), fps=FPS)


def test_the_timeline_shows_the_change_at_the_right_time(predictor, two_motions):
    stride = 1.0
    tl = timeline(predictor, two_motions, window=2.0, stride=stride, clips=3)
    assert tl.frames_decoded == 2 * CHANGE_S * FPS          # every frame decoded exactly once
    assert tl.starts == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0] and not tl.warnings
    top1 = [top[0][0] for top in tl.top(1)]
    for s, e, label in zip(tl.starts, tl.ends(), top1):
        if e <= CHANGE_S:
            assert label == FIRST, (s, top1)
        elif s >= CHANGE_S:
            assert label == SECOND, (s, top1)
    first_after = next(s + tl.window_s / 2 for s, label in zip(tl.starts, top1) if label == SECOND)
    assert abs(first_after - CHANGE_S) <= stride
    assert torch.allclose(tl.probs.sum(1), torch.ones(len(tl.starts)), atol=1e-5)


def test_a_window_is_scored_as_the_predictor_scores_that_clip(predictor, two_motions):
    tl = timeline(predictor, two_motions, window=2.0, stride=1.5)
    tf = predictor.transform()
    with VideoReader(two_motions) as r:
        for k in (0, 3):
            (offset,) = sample_clip_times(2.0, r.fps, frames=predictor.frames, rate=predictor.rate)
            x = tf.load(r, tl.starts[k] + offset, predictor.frames, predictor.rate)
            assert torch.allclose(predictor.probs(x)[0], tl.probs[k], atol=1e-5)


def test_seconds_and_windows():
    assert parse_seconds("2s", "--window") == 2.0 and parse_seconds("500ms", "w") == 0.5
    assert parse_seconds("1.5", "w") == 1.5
    for bad in ("abc", "-1s", "0", "2h", "9" * 100):
        with pytest.raises(ValueError, match="^--stride"):
            parse_seconds(bad, "--stride")
    assert window_starts(8.0, 2.0, 1.0) == [0, 1, 2, 3, 4, 5, 6]
    assert window_starts(1.0, 2.0, 1.0) == [0]       # shorter than a window: one window
    with pytest.raises(ValueError, match="stride"):
        window_starts(3600.0, 2.0, 0.001)


def test_cli_json_csv_and_errors(two_motions, tmp_path, capsys):
    assert main([str(SHIPPED), str(two_motions), "--window", "2s", "--stride", "2s", "--json",
                 "--topk", "2"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert [w["start_s"] for w in doc["windows"]] == [0, 2, 4, 6]
    assert all(len(w["top"]) == 2 for w in doc["windows"]) and "windows" in err  # progress lines
    csv_file = tmp_path / "t.csv"
    assert main([str(SHIPPED), str(two_motions), "--stride", "3", "--csv", "--out", str(csv_file),
                 "--quiet", "--topk", "1"]) == 0
    rows = list(csv.DictReader(io.StringIO(csv_file.read_text())))
    assert [r["start_s"] for r in rows] == ["0", "3", "6"] and rows[0]["rank"] == "1"
    for argv, field in ((["--window", "two"], "--window"), ([], "no such file")):
        video = str(two_motions) if argv else str(tmp_path / "missing.mp4")
        assert main([str(SHIPPED), video, *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and field in err[-1]


@pytest.mark.parametrize("text", ["hi secret\n", "hello secret 12345"])  # torch: KeyError / unpickling
def test_cli_a_text_file_as_checkpoint_is_one_line(text, two_motions, tmp_path, capsys):
    bad = tmp_path / "notes.pt"
    bad.write_text(text)
    assert main([str(bad), str(two_motions)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "notes.pt" in err[0]
    assert "secret" not in err[0]
