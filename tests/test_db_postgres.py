"""The run store on PostgreSQL: a temporary server (``initdb``/``pg_ctl``), schema + round trip.

Skipped when no PostgreSQL binaries or psycopg are available, or the server cannot start.
"""
from __future__ import annotations

import pytest

from tests.helpers.jobs import postgres_server

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def test_run_store_round_trip_on_postgresql(pg_url, tmp_path, monkeypatch):
    import db
    from db import Metric, Run, read_session, write
    from jobs import api
    from sqlalchemy import func, select
    from tests.helpers.jobs import tiny_spec

    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("CSN_DATA_DIR", str(tmp_path / "var"))   # the queue file stays local
    monkeypatch.setenv("CSN_DATA_ROOTS", str(tmp_path))
    db.dispose_engines()
    try:
        assert db.get_engine().dialect.name == "postgresql"
        aid = api.save_architecture("tiny", tiny_spec())
        rid = api.enqueue_run(tiny_spec(), str(tmp_path), {"epochs": 1}, name="pg")
        r = api.get_run(rid)
        assert r["architecture_id"] == aid and r["status"] == "queued" and r["spec"] == tiny_spec()
        assert r["created_at"].tzinfo is not None
        pts = [{"event": "step", "split": "train", "epoch": 1, "step": s, "name": "loss", "value": float(s)}
               for s in (1, 2)]
        write(lambda s: db.add_metrics(s, rid, pts + pts))
        write(lambda s: db.add_metrics(s, rid, pts + [{**pts[0], "step": 3}]))
        assert [m["step"] for m in api.get_metrics(rid)] == [1, 2, 3]
        with read_session() as s:
            assert s.scalar(select(func.count()).select_from(Metric)) == 3
        assert api.cancel_run(rid) and api.retry_run(rid)
        assert api.list_architectures()[0]["flops"] > 0 and api.worker_status()["queued"] == 1
        write(lambda s: s.delete(s.get(Run, rid)))                    # cascades to metrics
        with read_session() as s:
            assert s.scalar(select(func.count()).select_from(Metric)) == 0
    finally:
        db.dispose_engines()


def test_metric_reads_and_query_plans_on_postgresql(pg_url, tmp_path, monkeypatch):
    """Downsampled reads pick the same points as on SQLite; polling and the series scan use
    their indexes (seq scans disabled so the plan shows whether an index applies)."""
    import db
    from db.downsample import reduce
    from jobs import api
    from sqlalchemy import select
    from db.models import Metric
    from tests.helpers.runs import seed_run, step_points

    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("CSN_DATA_DIR", str(tmp_path / "var"))
    db.dispose_engines()
    try:
        rid = seed_run(step_points(range(5_000), {"loss": lambda s: float((s * 7919) % 1000)},
                                   epoch=lambda s: s // 500), dataset="/x")
        full = api.get_metrics(rid)
        shown = api.get_metrics(rid, max_points=300)
        assert [p["id"] for p in shown] == [p["id"] for p in reduce(full, 300)]
        assert [p["id"] for p in api.get_metrics(rid, since_id=full[-3]["id"])] == \
            [p["id"] for p in full[-2:]]
        eng = db.get_engine()
        with eng.connect() as c:
            c.exec_driver_sql("ANALYZE metrics")
            c.exec_driver_sql("SET enable_seqscan = off")
            for q, ix in ((select(Metric.id).where(Metric.run_id == rid, Metric.id > full[-3]["id"]),
                           "metrics_pkey|ix_metrics_run_id"),
                          (select(Metric.step, Metric.value, Metric.id).where(
                              Metric.run_id == rid, Metric.name == "loss", Metric.split == "train",
                              Metric.event == "step").order_by(Metric.step, Metric.value),
                           "ix_metrics_series")):
                sql = str(q.compile(eng, compile_kwargs={"literal_binds": True}))
                plan = " ".join(r[0] for r in c.exec_driver_sql("EXPLAIN " + sql))
                assert any(i in plan for i in ix.split("|")) and "Seq Scan" not in plan, plan
    finally:
        db.dispose_engines()
