"""UCF101, HMDB51 and Something-Something v2 read from their official split / label files on
small trees laid out as released, with real video files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from backend.data.datasets import DatasetError, load_splits
from backend.data.layouts import detect_layout
from backend.train import TrainConfig, config_from_args
from backend.data.video import probe
from tests.helpers.benchmark_trees import (HMDB_CLASSES, SSV2_TEMPLATES, UCF_CLASSES, make_hmdb51, make_ssv2,
                             make_ucf101)


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    return make_ucf101(tmp_path_factory.mktemp("ucf"))


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory) -> Path:
    return make_hmdb51(tmp_path_factory.mktemp("hmdb"))


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory) -> Path:
    return make_ssv2(tmp_path_factory.mktemp("ssv2"))


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("split", [1, 2, 3])
def test_ucf101_official_split_lists(ucf: Path, split: int):
    assert detect_layout(ucf) == "ucf101"
    s = load_splits(ucf, split=split)
    assert s.classes == list(UCF_CLASSES)                 # classInd order, 1-based -> 0-based
    assert len(s.train) == 6 and len(s.val) == 3
    assert all(f"_g{split:02d}_" in Path(it.path).name for it in s.val)
    assert not any(f"_g{split:02d}_" in Path(it.path).name for it in s.train)
    for it in s.train + s.val:                            # label = the class folder's classInd row
        assert Path(it.path).parent.name == s.classes[it.label]
        assert probe(it.path).frames == 16                # the listed files are the real videos
    assert "testlist" in s.source


def test_ucf101_errors_name_the_file_and_line(ucf: Path, tmp_path: Path):
    root = _copy(ucf, tmp_path)
    lists = root / "ucfTrainTestlist"
    (lists / "testlist03.txt").unlink()
    with pytest.raises(DatasetError, match=r"missing split file .*testlist03\.txt"):
        load_splits(root, split=3)
    rows = (lists / "trainlist01.txt").read_text().splitlines()
    (lists / "trainlist02.txt").write_text("ApplyEyeMakeup/../../secret.avi 1\n")
    with pytest.raises(DatasetError, match=r"trainlist02\.txt:1: expected 'Class/video.avi <label>'"):
        load_splits(root, split=2)                        # a list cannot point outside the tree
    rows[1] = rows[1].rsplit(" ", 1)[0] + " 3"            # a label that contradicts classInd
    (lists / "trainlist01.txt").write_text("\n".join(rows))
    with pytest.raises(DatasetError, match=r"trainlist01\.txt:2: the label disagrees"):
        load_splits(root, split=1)
    with pytest.raises(DatasetError, match="part of the UCF101 folder"):
        load_splits(root / "UCF-101")                     # not a random split of class folders
    shutil.rmtree(root / "UCF-101")
    with pytest.raises(DatasetError, match="no UCF101 video folder"):
        load_splits(root, split=2)


def test_hmdb51_train_test_unused(hmdb: Path, tmp_path: Path):
    assert detect_layout(hmdb) == "hmdb51"
    s1, s3 = load_splits(hmdb, split=1), load_splits(hmdb, split=3)
    assert s1.classes == sorted(HMDB_CLASSES)
    assert (len(s1.train), len(s1.val)) == (6, 6)        # videos 0 and 3 test, 1 and 2 train
    assert (len(s3.train), len(s3.val)) == (6, 3)        # video 0 unused, 2 test, 1 and 3 train
    assert not any(Path(it.path).name.startswith("Video0_") for it in s3.train + s3.val)
    for it in s1.train + s1.val:
        assert Path(it.path).parent.name == s1.classes[it.label] and Path(it.path).is_file()
    root = _copy(hmdb, tmp_path)
    (root / "testTrainMulti_7030_splits" / "cartwheel_test_split2.txt").unlink()
    with pytest.raises(DatasetError, match=r"missing split file .*cartwheel_test_split2\.txt"):
        load_splits(root, split=2)


def test_ssv2_templates_to_classes(ssv2: Path, tmp_path: Path):
    assert detect_layout(ssv2) == "ssv2"
    s = load_splits(ssv2)
    assert s.classes == list(SSV2_TEMPLATES)
    assert (len(s.train), len(s.val)) == (6, 3)           # the test list (no labels) is not used
    train = json.loads((ssv2 / "something-something-v2-train.json").read_text())
    for e, it in zip(train, s.train):                    # [something] brackets dropped
        assert Path(it.path).name == f"{e['id']}.webm" and Path(it.path).is_file()
        assert s.classes[it.label] == e["template"].replace("[", "").replace("]", "")
    with pytest.raises(DatasetError, match="one official split"):
        load_splits(ssv2, split=2)
    root = _copy(ssv2, tmp_path)
    bad = json.loads((root / "something-something-v2-validation.json").read_text())
    bad[1]["template"] = "Dropping [something]"
    (root / "something-something-v2-validation.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match=r"validation\.json: entry 1: .*template"):
        load_splits(root)


def test_split_flag_is_a_train_config_field(ucf: Path, tmp_path: Path):
    cfg = config_from_args(["--arch", "ir-csn-26", "--data", str(ucf), "--out", "x", "--split", "2"])
    assert cfg.split == 2
    with pytest.raises(ValueError, match="split must be"):
        TrainConfig(split=4)
    plain = tmp_path / "plain"
    (plain / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="only UCF101 and HMDB51"):
        load_splits(plain, split=2)
    (plain / "ucfTrainTestlist").mkdir()
    (plain / "testTrainMulti_7030_splits").mkdir()
    with pytest.raises(DatasetError, match="UCF101 and HMDB51; keep one"):
        load_splits(plain)


def test_trainer_reads_a_layout_and_evaluate_scores_its_held_out_split(hmdb: Path, tmp_path: Path, capsys,
                                                                        monkeypatch):
    from backend import evaluate
    from backend import train as trainer
    from tests.helpers.motion_data import TINY_SPEC
    monkeypatch.setenv("CSN_DEPTHWISE", "native")        # no numba compile for a one-epoch run
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY_SPEC))
    out = tmp_path / "run"
    assert trainer.main(["--arch", str(spec), "--data", str(hmdb), "--split", "2", "--out", str(out),
                         "--epochs", "1", "--batch-size", "4", "--frames", "8", "--size", "32",
                         "--scale-min", "32", "--scale-max", "32", "--threads", "1", "--workers", "0",
                         "--eval-clips", "1", "--no-tensorboard", "--no-progress"]) == 0
    capsys.readouterr()
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["split"] == 2 and saved["classes"] == sorted(HMDB_CLASSES)
    val = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["metrics"]["videos"] for e in val if e["event"] == "epoch" and e["split"] == "val"] == [3]
    ckpt = sorted((out / "checkpoints").glob("epoch_*.pt"))[-1]
    assert evaluate.main([str(ckpt), "--held-out-of", str(out), "--clips", "1", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["videos"] == 3 and "HMDB51" in m["data"] and "split 2" in m["data"]
