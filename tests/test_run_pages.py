"""Runs, Run detail and Compare driven headless (AppTest) on a real SQLite store and real run
files: live table, pace, streamed log, downloads, rename/tags/delete, colours, x-axis, diff."""
from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend.csn import preset
from db import Run, utcnow, write
from tests.helpers.runs import seed_run, step_points, val_point

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
VIEWS = Path(MAIN).parent / "views"


def _run(store: Path, name: str, arch: str = "ir-csn-26", lr: float = 0.01, steps: int = 40,
         **kw) -> int:
    now, t0 = utcnow(), time.time() - 120
    out = store / "runs" / name
    out.mkdir(parents=True)
    pts = step_points(range(1, steps + 1), {"loss": lambda s: 2.0 / s, "lr": lr, "clips_per_s": 12.5},
                      epoch=lambda s: 1 + s // steps, t0=t0)
    pts.append(val_point(1, steps, 0.4, time=t0 + steps))
    return seed_run(pts, name=name, spec=preset(arch).to_dict(), dataset="/data/x",
                    hparams={"epochs": 4, "lr": lr, "frames": 8, "size": 64}, output_dir=str(out),
                    created_at=now - timedelta(minutes=10), started_at=now - timedelta(seconds=130),
                    total_steps=4 * steps, total_epochs=4, **kw)


def _page(at: AppTest, name: str) -> AppTest:
    at.switch_page(str(VIEWS / f"{name}.py")).run()
    assert not at.exception, at.exception
    return at


def _app(rid: int | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60)
    if rid is not None:
        at.query_params["run"] = str(rid)
    at.run()
    return at


def test_runs_table_rereads_runs_and_filters_by_tag(store):
    from jobs import records

    rid = _run(store, "a", status="running", step=0)
    other = _run(store, "b", status="succeeded", step=160)
    records.update_run(other, tags="baseline")
    at = _page(_app(), "runs")
    df = at.dataframe[0].value
    assert list(df["progress"]) == [1.0, 0.0]
    write(lambda s: setattr(s.get(Run, rid), "step", 120))
    at.run()                           # what the 2 s fragment does
    assert list(at.dataframe[0].value["progress"]) == [1.0, 0.75]
    at.multiselect(key="runs_tags").set_value(["baseline"]).run()
    assert list(at.dataframe[0].value["name"]) == ["b"]


def test_run_detail_pace_log_downloads_dates(store):
    rid = _run(store, "live", status="running", step=40)
    out = store / "runs" / "live"
    log = "".join(f"line {i}\n" for i in range(300)) + "epoch 1 50%\repoch 1 100%\n"
    (out / "train.log").write_text(log)
    (out / "metrics.jsonl").write_text('{"event": "start"}\n')
    at = _page(_app(rid), "run")
    m = {x.label: x.value for x in at.metric}
    assert m["clips/s"] == "12.5"
    assert m["elapsed"].startswith("2 min")
    # 40 steps in 39 s -> ~1 step/s, 120 steps left
    assert m["ETA"].startswith(("1 min", "2 min"))
    log = [c.value for c in at.code if "line 0" in c.value]
    assert log and "line 299" in log[0] and "epoch 1 100%" in log[0] and "50%" not in log[0]
    downloads = {d.proto.label for d in at.get("download_button")}
    assert {"metrics.jsonl", "metrics.csv", "spec.json", "train.log"} <= downloads
    assert not any("datetime.datetime" in str(t.value) for t in at.table)
    # the log grows: the next refresh appends only what is new
    with (out / "train.log").open("a") as f:
        f.write("line 300\n")
    at.run()
    assert any("line 300" in c.value and "line 0" in c.value for c in at.code)


def test_run_detail_rename_tags_notes_and_delete(store):
    from jobs import api

    rid = _run(store, "old", status="failed", error="boom")
    at = _page(_app(rid), "run")
    form = [t for t in at.text_input if t.label == "Name"][0]
    form.set_value("renamed")
    [t for t in at.text_input if t.label.startswith("Tags")][0].set_value("ir, small")
    at.text_area[0].set_value("tried lr 0.01")
    [b for b in at.button if b.label == "Save"][0].click().run()
    assert not at.exception
    r = api.get_run(rid)
    assert (r["name"], r["tags"], r["notes"]) == ("renamed", ["ir", "small"], "tried lr 0.01")
    at.checkbox(key="del_files").check()
    [b for b in at.button if b.label == "Delete run"][0].click().run()
    assert not at.exception
    assert api.get_run(rid) is None and not (store / "runs" / "old").exists()


def test_compare_one_colour_per_run_x_axis_and_diff(store):
    a = _run(store, "small-lr", lr=0.01, status="succeeded")
    b = _run(store, "big-lr", arch="ip-csn-26", lr=0.1, status="succeeded")
    at = _page(_app(), "compare")
    at.multiselect(key="cmp_runs").set_value([a, b]).run()
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    curves = [f for f in figs if any("·" in (t.get("name") or "") for t in f["data"])]
    assert len(curves) == 3                            # loss, accuracy, learning rate
    colour: dict[str, set] = {}
    for f in curves:
        for t in f["data"]:
            colour.setdefault(t["name"].split(" · ")[0], set()).add(t["line"]["color"])
    assert len(colour) == 2 and all(len(c) == 1 for c in colour.values())
    assert len(set.union(*colour.values())) == 2
    assert all(f["layout"]["xaxis"]["title"]["text"] == "step" for f in curves)
    at.radio(key="cmp_x").set_value("epoch").run()
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    loss = [f for f in figs if f["layout"]["title"]["text"] == "loss"][0]
    assert loss["layout"]["xaxis"]["title"]["text"] == "epoch"
    assert max(max(t["x"]) for t in loss["data"]) == pytest.approx(1.0)   # step 40 of 40/epoch
    diff = at.dataframe[0].value
    fields = set(diff["field"])
    assert {"hparams.lr", "arch.name"} <= fields and "hparams.epochs" not in fields


def test_runs_table_shows_the_trainers_defaults_not_none():
    """A run that left a hyper-parameter unset trained with TrainConfig's default: the Runs row
    says so (the table's placeholder covers only what is really unknown)."""
    from app.runs_data import run_row
    from backend.train import TrainConfig

    row = run_row({"id": 7, "status": "queued", "hparams": {"epochs": 2, "batch_size": None},
                   "spec": {"name": "ir-csn-26"}})
    c = TrainConfig()
    assert (row["epochs"], row["batch"]) == (2, c.batch_size)
    assert row["frames×size"] == f"{c.frames}×{c.size}"
    assert row["best val video@1 (%)"] is None                 # not measured yet


def test_runs_and_run_detail_say_when_a_trainer_made_no_progress(store):
    # its last event 100 s ago (the attempt started 130 s ago)
    quiet = _run(store, "quiet", status="running", progress_at=utcnow() - timedelta(seconds=100),
                 stall_timeout=900.0)
    _run(store, "busy", status="running", progress_at=utcnow())
    at = _page(_app(), "runs")
    df = at.dataframe[0].value
    assert dict(zip(df["name"], df["liveness"])) == {"quiet": "no progress for 1 min", "busy": ""}
    at = _page(_app(quiet), "run")
    assert any(w.value.startswith("no progress for 1 min") and "stall_timeout 900 s" in w.value
               for w in at.warning), [w.value for w in at.warning]
