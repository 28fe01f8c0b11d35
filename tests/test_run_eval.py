"""Run detail's held-out evaluation (AppTest, real SQLite store, real checkpoint and videos,
the real background `python -m backend.evaluate` process): clip vs video accuracy, per-class
table, confusion matrix, cached beside the checkpoint; a failing evaluation says why."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import db
from backend.csn import build_model, preset
from tests.helpers.benchmark_trees import UCF_CLASSES, make_ucf101
from tests.helpers.runs import seed_run

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
VIEW = str(Path(MAIN).parent / "views" / "run.py")


def _finished_run(store: Path, name: str, data: Path) -> tuple[int, Path]:
    """A succeeded run whose checkpoint always answers class 1 (HandstandPushups)."""
    out = store / "runs" / name
    (out / "checkpoints").mkdir(parents=True)
    spec = preset("motion-ir-csn", num_classes=3, frames=8, height=32, width=32)
    model = build_model(spec)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.copy_(torch.tensor([0.0, 10.0, 0.0]))
    ckpt = out / "checkpoints" / "epoch_0001.pt"
    torch.save({"format": "csn-explorer/1", "model": model.state_dict(), "spec": spec.to_dict(),
                "classes": list(UCF_CLASSES), "config": {"frames": 8, "size": 32, "rate": 2}}, ckpt)
    (out / "config.json").write_text(json.dumps({"config": {"data": str(data), "split": 2, "seed": 0}}))
    rid = seed_run(checkpoints=[(1, ckpt)], name=name, spec=spec.to_dict(), dataset=str(data),
                   hparams={"frames": 8, "size": 32}, output_dir=str(out), status="succeeded",
                   total_epochs=1, epoch=1)
    return rid, ckpt


def _open(rid: int) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params["run"] = str(rid)
    at.run()
    at.switch_page(VIEW).run()
    assert not at.exception, at.exception
    return at


def _evaluate(at: AppTest, done: Path) -> AppTest:
    at.radio(key="eval_protocol").set_value("centre").run()
    at.button(key="eval_start").click().run()
    assert not at.exception, at.exception
    assert any("in the background" in i.value for i in at.info)
    deadline = time.time() + 120
    while not done() and time.time() < deadline:
        time.sleep(0.5)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_run_detail_held_out_report_and_failure(store, tmp_path: Path):
    ucf = make_ucf101(tmp_path / "ucf")
    rid, ckpt = _finished_run(store, "ok", ucf)
    report = ckpt.parent / "epoch_0001.eval-centre"
    at = _evaluate(_open(rid), lambda: (report / "metrics.json").is_file())
    m = {x.label: x.value for x in at.metric}
    assert (m["clip@1"], m["video@1"], m["mean class@1"]) == ("33.3%", "33.3%", "33.3%")
    table = next(d.value for d in at.dataframe if "clip@1 (%)" in d.value.columns)
    assert list(table["class"]) == list(UCF_CLASSES)
    assert list(table["video@1 (%)"]) == [0.0, 100.0, 0.0] and list(table["videos"]) == [1, 1, 1]
    assert at.get("image") and (report / "confusion.png").is_file()
    assert any("testlist02" in c.value for c in at.caption)       # the run's split 2 held out
    assert at.button(key="eval_start").label == "Evaluate again"  # cached: a fresh page shows it
    fresh = _open(rid)                                             # default protocol: not cached
    assert fresh.button(key="eval_start").label == "Evaluate the held-out set"
    fresh.radio(key="eval_protocol").set_value("centre").run()     # cached: shown at once
    assert {x.label for x in fresh.metric} >= {"clip@1", "video@1", "video@5"}

    db.dispose_engines()
    bad, bad_ckpt = _finished_run(store, "gone", tmp_path / "deleted-data")
    folder = bad_ckpt.parent / "epoch_0001.eval-centre"
    from app.views.run_eval import report_state
    at = _evaluate(_open(bad), lambda: report_state(folder, bad_ckpt) == "failed")
    assert any("The evaluation failed: error: data path" in e.value for e in at.error), \
        [e.value for e in at.error]
