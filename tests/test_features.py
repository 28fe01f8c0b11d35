"""backend.features: one vector per real video, resumable, bad videos listed."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.features import FeatureError, extract, list_videos, main
from backend.inference.predictor import Predictor
from backend.synth import generate

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "backend" / "assets" / "motion_csn.pt"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vids") / "data"
    generate(root, per_class=1, seed=0, size=48, frames=24, splits={"train": 1.0})
    (root / "train" / "move-left" / "broken.mp4").write_text("not a video")
    return root


def _index(out: Path) -> list[dict]:
    return list(csv.DictReader(out.with_suffix(".index.csv").open()))


def test_pool_feature_is_what_the_classifier_reads_and_bad_videos_are_listed(videos, tmp_path):
    out = tmp_path / "f.npy"
    summary = extract(str(SHIPPED), str(videos), str(out), layer="pool", clips=2)
    feats, rows = np.load(out), _index(out)
    assert summary["rows"] == len(rows) == len(feats) == 8 and summary["bad"] == 1
    assert {r["label"] for r in rows} == {"move-left", "move-right", "move-up", "move-down",
                                          "rotate-cw", "rotate-ccw", "zoom-in", "zoom-out"}
    assert all(r["split"] == "train" for r in rows)
    bad = list(csv.DictReader(out.with_suffix(".bad.csv").open()))
    assert [Path(b["path"]).name for b in bad] == ["broken.mp4"] and "not a video" in bad[0]["error"]
    pr = Predictor(SHIPPED)
    x = pr.clips(rows[0]["path"], 2)
    with torch.no_grad():
        logits = pr.model(x).mean(0)               # the head is linear after the pooling
        assert torch.allclose(pr.model.head.fc(torch.from_numpy(feats[0])), logits, rtol=1e-4, atol=1e-4)
    conv4 = extract(str(SHIPPED), str(videos), str(tmp_path / "c4.npy"), layer="conv4", clips=1)
    assert conv4["dim"] == pr.spec.stages[2].width and feats.shape[1] == pr.spec.stages[3].width
    meta = json.loads((tmp_path / "f.meta.json").read_text())
    assert meta["complete"] and meta["layer"] == "pool" and meta["dim"] == feats.shape[1]


def test_csv_input_resume_refusal_and_errors(videos, tmp_path, capsys):
    listing = tmp_path / "list.csv"
    rows = [(p, p.parent.name) for p in sorted((videos / "train").rglob("*.mp4"))
            if p.name != "broken.mp4"][:3]
    listing.write_text("path,label\n" + "".join(f"{p},{lb}\n" for p, lb in rows))
    assert [e.label for e in list_videos(listing)] == [lb for _, lb in rows]
    out = tmp_path / "c.npy"
    assert main([str(SHIPPED), str(listing), "--clips", "1", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 3
    # the same command again: nothing to do, same matrix
    before = np.load(out)
    assert main([str(SHIPPED), str(listing), "--clips", "1", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 3 and np.array_equal(np.load(out), before)
    assert main([str(SHIPPED), str(listing), "--clips", "1", "--layer", "conv4", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --layer: 'conv4' differs")
    with pytest.raises(FeatureError, match="^VIDEOS"):
        list_videos(tmp_path / "nowhere")
    assert main([str(SHIPPED), str(listing), "--out", str(tmp_path / "x.txt")]) == 1


@pytest.mark.slow
def test_an_interrupted_extraction_resumes_where_it_stopped(videos, tmp_path):
    out = tmp_path / "r.npy"
    cmd = [sys.executable, "-m", "backend.features", str(SHIPPED), str(videos), "--clips", "2",
           "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in p.stderr:
        if line.startswith("[3/"):
            p.send_signal(signal.SIGKILL)   # no clean-up at all
            break
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL and not out.exists()
    done = len(_index(out))
    assert done >= 2
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    assert summary["skipped"] >= done and summary["rows"] == 8 and summary["bad"] == 1
    fresh = tmp_path / "fresh.npy"
    extract(str(SHIPPED), str(videos), str(fresh), clips=2)
    assert [r["path"] for r in _index(out)] == [r["path"] for r in _index(fresh)]
    assert np.allclose(np.load(out), np.load(fresh), atol=1e-5)


@pytest.mark.slow
def test_run_detail_extracts_features_in_the_background(videos, tmp_path, monkeypatch):
    import shutil
    import time

    import db
    from streamlit.testing.v1 import AppTest

    from tests.helpers.runs import seed_run

    var = tmp_path / "var"
    monkeypatch.setenv("CSN_DATA_DIR", str(var))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    db.dispose_engines()
    data = var / "videos"
    shutil.copytree(videos, data)
    run_dir = var / "runs" / "run_00001"
    (run_dir / "checkpoints").mkdir(parents=True)
    ckpt = shutil.copy(SHIPPED, run_dir / "checkpoints" / "epoch_0001.pt")
    try:
        rid = seed_run(checkpoints=[(1, ckpt)], name="done", spec={"name": "motion-ir-csn"},
                       dataset=str(data), status="succeeded", output_dir=str(run_dir))
        at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60).run()
        at.query_params["run"] = str(rid)
        at.switch_page(str(REPO / "app" / "views" / "run.py")).run()
        assert not at.exception, at.exception
        assert at.text_input(key="feat_videos").value == str(data)
        at.number_input(key="feat_clips").set_value(1).run()
        at.button(key="feat_go").click().run()
        out, meta = run_dir / "features" / "pool.npy", run_dir / "features" / "pool.meta.json"
        for _ in range(240):   # the command writes meta "complete" last
            if meta.exists() and json.loads(meta.read_text()).get("complete"):
                break
            time.sleep(0.5)
        assert out.exists(), (run_dir / "features" / "pool.log").read_text()
        for _ in range(20):    # and then exits
            at.run()
            if at.get("download_button") and any(b.label == "pool.npy" for b in at.get("download_button")):
                break
            time.sleep(0.5)
        labels = [b.label for b in at.get("download_button")]
        assert {"pool.npy", "pool.index.csv", "pool.bad.csv"} <= set(labels), labels
        assert np.load(out).shape[0] == 8
    finally:
        db.dispose_engines()
