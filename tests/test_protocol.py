"""The named test protocols (backend.training.protocol, python -m backend.evaluate): views, clip@1 vs
video@1/@5, per-class and mean class accuracy, confusion matrix CSV/PNG, three-split mean."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.csn import build_model, preset
from backend.data.datasets import load_splits
from backend.evaluate import evaluate, main, video_loader
from backend.training.protocol import predict_videos, summarise
from backend.data import video
from backend.data.video import Norm
from tests.helpers.benchmark_trees import UCF_CLASSES, make_ucf101

SPEC = dict(frames=8, height=32, width=32)


def _model(classes: int, favour: int | None = None, seed: int = 0) -> torch.nn.Module:
    """A tiny ir-CSN; with ``favour`` its head always answers that class."""
    torch.manual_seed(seed)
    model = build_model(preset("motion-ir-csn", num_classes=classes, **SPEC)).eval()
    if favour is not None:
        with torch.no_grad():
            model.head.fc.weight.zero_()
            model.head.fc.bias.copy_(10.0 * torch.nn.functional.one_hot(torch.tensor(favour), classes))
    return model


def _save(model: torch.nn.Module, classes: list[str], path: Path) -> Path:
    torch.save({"format": "csn-explorer/1", "model": model.state_dict(), "spec": model.spec.to_dict(),
                "classes": classes, "config": {"frames": 8, "size": 32, "rate": 2}}, path)
    return path


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    return make_ucf101(tmp_path_factory.mktemp("ucf"))


def test_kinetics_protocol_per_class_confusion_files(ucf: Path, tmp_path: Path, capsys):
    classes = list(UCF_CLASSES)
    ck = _save(_model(3, favour=1), classes, tmp_path / "m.pt")
    out = tmp_path / "report"
    assert main([str(ck), str(ucf), "--protocol", "kinetics", "--split", "2", "--per-class",
                 "--out", str(out), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert (m["clips"], m["crops"], m["videos"], m["split"]) == (10, 3, 3, 2)
    assert m["confusion"] == [[0, 1, 0], [0, 1, 0], [0, 1, 0]]   # every video called class 1
    assert [r["video_top1"] for r in m["per_class"]] == [0.0, 1.0, 0.0]
    assert [r["clip_top1"] for r in m["per_class"]] == [0.0, 1.0, 0.0]
    assert m["video_top1"] == pytest.approx(1 / 3) and m["mean_class_top1"] == pytest.approx(1 / 3)
    assert m["video_top5"] == 1.0                                # 3 classes: top-5 holds them all
    rows = list(csv.reader((out / "confusion.csv").open()))
    assert rows[0][1:] == classes and [r[2] for r in rows[1:]] == ["1", "1", "1"]
    per = list(csv.DictReader((out / "per_class.csv").open()))
    assert [p["class"] for p in per] == classes and per[1]["video_top1"] == "1.0"
    with Image.open(out / "confusion.png") as im:
        assert im.size[0] > 300 and im.size[1] > 300
    assert json.loads((out / "metrics.json").read_text())["confusion"] == m["confusion"]
    assert main([str(ck), str(ucf), "--protocol", "centre", "--per-class"]) == 0
    text = capsys.readouterr().out
    assert "clip@1" in text and "video@1" in text and "HandstandPushups" in text


def test_views_and_scores_agree_with_the_training_evaluator(ucf: Path):
    s = load_splits(ucf, split=1)
    model = _model(len(s.classes), seed=3)
    got = summarise(predict_videos(model, s.val, s.classes, frames=8, rate=2, size=32, clips=2, crops=1))
    ref = evaluate(model, video_loader(s.val, frames=8, rate=2, size=32, num_clips=2, norm=Norm.of(model.spec)))
    for k in ("clip_top1", "video_top1", "video_top5", "loss"):
        assert got[k] == pytest.approx(ref[k], rel=1e-5), k
    assert sum(map(sum, got["confusion"])) == got["videos"] == len(s.val)
    three = predict_videos(model, s.val[:1], s.classes, frames=8, rate=2, size=32, clips=2, crops=3)
    x = video.test_clips(s.val[0].path, frames=8, rate=2, size=32, num_clips=2, crops=3, norm=Norm.of(model.spec))
    with torch.no_grad():
        logits = model(x)
    np.testing.assert_allclose(three.probs[0], logits.softmax(1).mean(0).numpy(), rtol=1e-4, atol=1e-6)
    centre = logits[1::3].argmax(1)                              # clip-major: crop 1 of 3 is the centre
    assert three.clip_hits[0] == int((centre == s.val[0].label).sum())


def test_three_split_mean_needs_one_model_per_split(ucf: Path, tmp_path: Path, capsys):
    classes = list(UCF_CLASSES)
    for k in (1, 2, 3):            # the split-k model answers class k-1: split k scores 1/3 each,
        _save(_model(3, favour=k - 1), classes, tmp_path / f"s{k}.pt")  # on a different class
    assert main([str(tmp_path / "s{split}.pt"), str(ucf), "--split", "all", "--clips", "2", "--json",
                 "--per-class"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert [r["checkpoint"][-5:] for r in m["splits"]] == ["s1.pt", "s2.pt", "s3.pt"]
    assert [np.argmax(np.asarray(r["confusion"]).sum(0)) for r in m["splits"]] == [0, 1, 2]
    for key in ("clip_top1", "video_top1", "video_top5", "mean_class_top1"):
        assert m["mean"][key] == pytest.approx(np.mean([r[key] for r in m["splits"]]))
    assert main([str(tmp_path / "s1.pt"), str(ucf), "--split", "all"]) == 1
    assert "one model per split" in capsys.readouterr().err


def test_bad_arguments_are_one_line_errors(ucf: Path, tmp_path: Path, capsys):
    ck = _save(_model(3), list(UCF_CLASSES), tmp_path / "m.pt")
    with pytest.raises(SystemExit) as e:
        main([str(ck), str(ucf), "--protocol", "kinetics", "--clips", "4"])
    assert e.value.code == 2 and "--protocol kinetics sets --clips" in capsys.readouterr().err
    assert main([str(ck), str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.startswith("error: data path")
    other = _save(_model(3), ["a", "b", "c"], tmp_path / "other.pt")
    assert main([str(other), str(ucf)]) == 1
    assert "3 of the data's 3 classes are not among" in capsys.readouterr().err
