"""Bounded metric reads for the run pages: downsampling that keeps each bucket's min, max and
last point, incremental polling, the query plans, run records. Real SQLite files."""
from __future__ import annotations

import math
import random

import pytest

import db
from db import write
from db.downsample import bucket_width, merge, reduce
from tests.helpers.runs import add_points, seed_run


def _points(lo: int, hi: int, seed: int = 0) -> list[dict]:
    """Step points of a noisy loss, a constant lr (all ties) and per-epoch validation."""
    rnd = random.Random(seed + lo)
    out = []
    for s in range(lo, hi):
        out.append({"event": "step", "split": "train", "epoch": s // 1000, "step": s,
                    "name": "loss", "value": 2 * math.exp(-s / 3000) + rnd.random(), "time": 1e9 + s})
        out.append({"event": "step", "split": "train", "epoch": s // 1000, "step": s,
                    "name": "lr", "value": 0.1, "time": 1e9 + s})
        if s % 1000 == 999:
            out.append({"event": "epoch", "split": "val", "epoch": s // 1000, "step": s,
                        "name": "video_top1", "value": rnd.random(), "time": 1e9 + s})
    return out


def _check_buckets(full: list[dict], shown: list[dict], max_points: int) -> None:
    """Every bucket of ``full``: its min, its max and its last point are in ``shown``."""
    assert len(shown) <= max_points
    w = bucket_width(full[-1]["step"], max_points)
    buckets: dict[int, list[dict]] = {}
    for p in full:
        buckets.setdefault(p["step"] // w, []).append(p)
    keep = {(p["step"], p["value"]) for p in shown}
    for pts in buckets.values():
        lo, hi = min(p["value"] for p in pts), max(p["value"] for p in pts)
        assert any(v == lo for s, v in keep if pts[0]["step"] <= s <= pts[-1]["step"])
        assert any(v == hi for s, v in keep if pts[0]["step"] <= s <= pts[-1]["step"])
        assert (pts[-1]["step"], pts[-1]["value"]) in keep
    assert all(p in full for p in shown)


def test_reduce_keeps_bucket_min_max_last_and_merge_is_exact():
    rnd = random.Random(3)
    pts = [{"id": i + 1, "step": i, "value": rnd.gauss(0, 1)} for i in range(20_000)]
    out = reduce(pts, 600)
    _check_buckets(pts, out, 600)
    assert out[-1] is pts[-1] and len(out) > 300
    assert reduce(pts[:500], 600) == pts[:500]          # short series stay whole
    # growing in polls of random size gives exactly the reduction of every point
    shown, i = [], 0
    while i < len(pts):
        n = rnd.choice((1, 7, 250, 3000))
        shown = merge(shown, pts[i:i + n], 600)
        assert len(shown) <= 600
        i += n
    assert [p["id"] for p in shown] == [p["id"] for p in out]


def test_get_metrics_downsamples_step_series_and_keeps_epochs_whole(store):
    from jobs import api

    rid = seed_run(_points(0, 12_000))
    full = api.get_metrics(rid)
    shown = api.get_metrics(rid, max_points=900)
    assert len(full) == 24_012
    for name in ("loss", "lr"):
        f = [p for p in full if p["name"] == name]
        s = [p for p in shown if p["name"] == name]
        _check_buckets(f, s, 900)
        assert [p["id"] for p in s] == [p["id"] for p in reduce(f, 900)]  # the DB picks as reduce
    val = [p for p in shown if p["name"] == "video_top1"]
    assert val == [p for p in full if p["name"] == "video_top1"] and len(val) == 12
    assert shown == sorted(shown, key=lambda p: (p["epoch"], p["step"], p["id"]))
    assert max(p["id"] for p in shown) == max(p["id"] for p in full)   # polling goes on from it


def test_stored_buckets_match_a_scan_in_any_insertion_order(store):
    """Buckets kept at ingestion (batches out of step order, duplicates) draw the same points
    as scanning every point; a store without buckets falls back to the scan."""
    from sqlalchemy import delete

    from db.models import MetricBucket
    from jobs import api

    rid = seed_run()
    pts = _points(0, 20_000, seed=5)
    rnd = random.Random(1)
    chunks = [pts[i:i + 777] for i in range(0, len(pts), 777)]
    rnd.shuffle(chunks)
    for c in chunks:
        add_points(rid, c + rnd.sample(pts, 50))          # late batches and re-sent points
    full = sorted(api.get_metrics(rid), key=lambda p: (p["step"], p["id"]))
    shown = api.get_metrics(rid, max_points=1200)
    for name in ("loss", "lr"):
        f = [p for p in full if p["name"] == name]
        assert {p["id"] for p in shown if p["name"] == name} >= {p["id"] for p in reduce(f, 1200)}
    n = write(lambda s: s.execute(delete(MetricBucket)).rowcount)
    assert n == 2 * (19_999 // 64 + 1)                  # loss and lr, 64 steps a bucket
    assert {p["id"] for p in api.get_metrics(rid, max_points=1200)} == {p["id"] for p in shown}


def test_refresh_reads_only_new_points_and_matches_a_fresh_read(store):
    from app.runs_data import live_metrics
    from jobs import api

    rid = seed_run(_points(0, 6_000))
    state: dict = {}
    run = api.get_run(rid)
    m = live_metrics(state, api, [run], max_points=600)[rid]
    assert m.fetched < 1_300 and m.reduced
    assert live_metrics(state, api, [run], max_points=600)[rid].fetched == 0
    before = api.get_metrics(rid)[-1]["id"]
    add_points(rid, _points(6_000, 6_040))
    new = api.get_metrics(rid, since_id=before)
    assert [p["id"] for p in new] == list(range(before + 1, before + 81))  # 40 steps x 2 series
    assert {p["id"] for p in api.get_metrics(rid, since_id=before, max_points=600)} <= \
        {p["id"] for p in new}
    m = live_metrics(state, api, [run], max_points=600)[rid]
    assert 0 < m.fetched <= 80 and m.last_id == before + 80
    fresh = {p["id"] for p in api.get_metrics(rid, max_points=600)}
    assert {p["id"] for p in m.points()} == fresh
    other = live_metrics({}, api, [run], max_points=600)[rid]   # another session: no rescan
    assert other.fetched == 0 and {p["id"] for p in other.points()} == fresh


def test_query_plans_use_the_metric_indexes(store):
    from sqlalchemy import func, select, tuple_

    from db.models import Metric

    rid = seed_run(_points(0, 50))
    eng = db.get_engine()

    def plan(q) -> str:
        sql = str(q.compile(eng, compile_kwargs={"literal_binds": True}))
        with eng.connect() as c:
            return " ".join(str(r[-1]) for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    poll = plan(select(Metric.id, Metric.value).where(Metric.run_id == rid, Metric.id > 40))
    assert "ix_metrics_run_id (run_id=? AND id>?)" in poll
    scan = plan(select(Metric.step, Metric.value, Metric.id).where(
        Metric.run_id == rid, Metric.name == "loss", Metric.split == "train",
        Metric.event == "step").order_by(Metric.step, Metric.value, Metric.id))
    assert "COVERING INDEX ix_metrics_series" in scan and "TEMP B-TREE" not in scan
    key = (Metric.name, Metric.split, Metric.event)
    seek = plan(select(*key).where(Metric.run_id == rid, tuple_(*key) > tuple_("loss", "train", "step"))
                .order_by(*key).limit(1))               # the next series: a seek, not a scan
    assert "COVERING INDEX ix_metrics_series (run_id=? AND (name,split,event)>(?,?,?))" in seek, seek
    assert "TEMP B-TREE" not in seek
    last = plan(select(func.max(Metric.step)).where(
        Metric.run_id == rid, Metric.name == "loss", Metric.split == "train", Metric.event == "step"))
    assert "ix_metrics_series" in last and "SCAN" not in last, last


def test_old_store_gets_new_columns_and_indexes(store):
    import sqlite3

    store.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(store / "csn.db")
    con.executescript("""
        CREATE TABLE runs (id INTEGER PRIMARY KEY, name VARCHAR(200), spec JSON NOT NULL,
            dataset TEXT NOT NULL, hparams JSON NOT NULL, status VARCHAR(16) NOT NULL,
            epoch INTEGER NOT NULL, step INTEGER NOT NULL, total_epochs INTEGER NOT NULL,
            total_steps INTEGER NOT NULL, heartbeat_at DATETIME, error TEXT, log_tail TEXT,
            created_at DATETIME NOT NULL, started_at DATETIME, finished_at DATETIME,
            output_dir TEXT, worker_id VARCHAR(200), pid INTEGER, task_id VARCHAR(64),
            attempts INTEGER NOT NULL, cancel_requested BOOLEAN NOT NULL,
            metrics_offset INTEGER NOT NULL, best_val_video_top1 FLOAT, architecture_id INTEGER);
        CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, event VARCHAR(16),
            split VARCHAR(16), epoch INTEGER, step INTEGER, name VARCHAR(100), value FLOAT, time FLOAT);
        INSERT INTO runs VALUES (1, 'old', '{}', '/x', '{}', 'succeeded', 1, 2, 1, 2, NULL, NULL,
            NULL, '2026-01-01 00:00:00', NULL, NULL, NULL, NULL, NULL, NULL, 1, 0, 0, NULL, NULL);
    """)
    con.close()
    from jobs import api, records

    assert records.update_run(1, notes="kept", tags="a, b, a")
    r = api.get_run(1)
    assert (r["name"], r["notes"], r["tags"]) == ("old", "kept", ["a", "b"])
    with db.get_engine().connect() as c:
        names = {row[1] for row in c.exec_driver_sql("PRAGMA index_list(metrics)")}
    assert {"ix_metrics_run_id", "ix_metrics_series"} <= names


def test_records_rename_tags_delete_and_csv(store):
    from jobs import api, records

    rid = seed_run(status="succeeded", output_dir=str(store / "runs" / "run_00001"))
    out = store / "runs" / "run_00001"
    out.mkdir(parents=True)
    (out / "train.log").write_text("hello\n")
    add_points(rid, _points(0, 1_500))
    assert records.update_run(rid, name="  baseline ", tags=["x", " y ", ""])
    r = api.get_run(rid)
    assert (r["name"], r["tags"]) == ("baseline", ["x", "y"])
    assert records.run_file(r, "train.log") == out / "train.log"
    assert records.run_file(r, "../csn.db") is None
    with pytest.raises(ValueError, match="at most 40"):
        records.update_run(rid, tags=["t" * 41])
    lines = "".join(records.metrics_csv(rid, batch=1_000)).splitlines()
    assert lines[0] == "id,event,split,epoch,step,name,value,time" and len(lines) == 1 + 3_001
    active = seed_run(status="running")
    with pytest.raises(ValueError, match="cancel it"):
        records.delete_run(active)
    outside = store.parent / "elsewhere"
    outside.mkdir()
    other = seed_run(status="failed", output_dir=str(outside))
    assert records.delete_run(other, files=True) and outside.is_dir()   # not under runs/
    assert records.delete_run(rid, files=True)
    assert api.get_run(rid) is None and api.get_metrics(rid) == [] and not out.exists()
    assert not records.delete_run(rid)
