"""The run store on PostgreSQL: a temporary server (``initdb``/``pg_ctl``), schema + round trip.

Skipped when no PostgreSQL binaries or psycopg are available, or the server cannot start.
"""
from __future__ import annotations

import pytest

from tests.jobs_helpers import postgres_server

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
    from tests.jobs_helpers import tiny_spec

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
