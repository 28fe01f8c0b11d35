"""Run store: schema, SQLite settings, idempotent metrics, API state transitions, reaper,
the ``jobs.tasks`` entry point. Real SQLite files, no worker process (see test_jobs.py)."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading

import pytest
from huey import Huey
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

import db
from db import CRASHED, RUNNING, Metric, Run, read_session, utcnow, write
from jobs.supervise import error_line, hparam_args
from jobs.tail import metric_rows, read_events
from backend.paths import PathRefused
from tests.helpers.jobs import REPO, tiny_spec
from tests.helpers.runs import seed_run


def test_schema_created_with_sqlite_settings(store):
    eng = db.get_engine()
    assert (store / "csn.db").exists()
    with eng.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
        tables = {r[0] for r in c.execute(text("select name from sqlite_master where type='table'"))}
    assert {"architectures", "runs", "metrics", "checkpoints", "workers"} <= tables
    out = subprocess.run([sys.executable, "-c", "import db, sys; db.get_engine(); print('torch' in sys.modules)"],
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_metrics_deduplicated_on_unique_key(store):
    rid = seed_run()
    pts = [{"event": "step", "split": "train", "epoch": 1, "step": s, "name": "loss", "value": 1.0 / s}
           for s in (1, 2, 3)]
    write(lambda s: db.add_metrics(s, rid, pts + pts[:1]))
    write(lambda s: db.add_metrics(s, rid, pts[1:] + [{**pts[2], "step": 4}]))
    with read_session() as s:
        rows = s.execute(select(Metric.step, Metric.value).where(Metric.run_id == rid).order_by(Metric.step)).all()
    assert [r.step for r in rows] == [1, 2, 3, 4]
    assert rows[0].value == 1.0
    with pytest.raises(IntegrityError):  # the constraint itself, not only the insert helper
        write(lambda s: s.add(Metric(run_id=rid, event="step", split="train", epoch=1, step=1,
                                     name="loss", value=9.0)))
    with pytest.raises(IntegrityError):  # foreign keys are enforced
        write(lambda s: s.add(Metric(run_id=rid + 99, event="step", name="x", value=1.0)))


def test_concurrent_writers_never_see_database_locked(store):
    rid = seed_run()
    code = ("import db, sys; rid, k = int(sys.argv[1]), int(sys.argv[2])\n"
            "for i in range(150):\n"
            "    db.write(lambda s: db.add_metrics(s, rid, [{'event': 'step', 'split': 'train', 'epoch': k,"
            " 'step': i, 'name': 'loss', 'value': float(i)}]))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(rid), str(k)], cwd=REPO, env=env,
                              stderr=subprocess.PIPE, text=True) for k in range(3)]
    errors = []

    def reader():
        for _ in range(100):
            with read_session() as s:
                s.scalar(select(func.count()).select_from(Metric))
    t = threading.Thread(target=reader)
    t.start()
    for p in procs:
        errors.append(p.communicate(timeout=120)[1])
        assert p.returncode == 0, errors[-1]
    t.join()
    with read_session() as s:
        assert s.scalar(select(func.count()).select_from(Metric).where(Metric.run_id == rid)) == 450


def _set_out(s, run_id: int, out) -> None:
    s.get(db.Run, run_id).output_dir = str(out)


def test_api_queue_states_and_architectures(store):
    from jobs import api
    from backend.csn import SpecError, count, preset
    aid = api.save_architecture("tiny", tiny_spec())
    assert api.save_architecture("tiny", tiny_spec()) == aid
    (a,) = api.list_architectures()
    from backend.csn import ArchSpec
    assert a["flops"] == count(ArchSpec.from_dict(tiny_spec())).totals.flops and a["params"] > 0
    with pytest.raises(SpecError):
        api.save_architecture("bad", {**tiny_spec(), "stem_width": 0})
    rid = api.enqueue_run(tiny_spec(), str(store), {"epochs": 1}, name="r1")
    r = api.get_run(rid)
    assert r["status"] == "queued" and r["architecture_id"] == aid and r["task_id"] and r["checkpoints"] == []
    with pytest.raises(PathRefused):  # outside the data roots: refused, no run row
        api.enqueue_run(preset("ir-csn-26"), "/x", {})
    assert api.enqueue_run(preset("ir-csn-26"), str(store / "x"), {}) > rid
    assert "cannot be retried" in api.retry_outlook(rid)                 # still queued
    assert api.cancel_run(rid) and api.get_run(rid)["status"] == "cancelled"
    assert not api.cancel_run(rid)
    assert "starts over from step 0" in api.retry_outlook(rid)          # no checkpoint yet
    out = store / "runs" / "r1"
    write(lambda s: _set_out(s, rid, out))
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "epoch_0002.pt").write_bytes(b"")
    assert "resumes after epoch 2" in api.retry_outlook(rid)
    assert api.retry_run(rid) and api.get_run(rid)["status"] == "queued"
    assert not api.retry_run(rid)
    assert [x["id"] for x in api.list_runs("queued")] == [rid + 1, rid]
    st = api.worker_status()
    assert st["alive"] is False and st["queued"] == 2
    assert api.get_metrics(rid) == [] and api.get_run(12345) is None


def test_reaper_marks_runs_of_dead_workers_crashed_and_kills_orphans(store):
    from jobs.liveness import HOST, pid_alive, reap_stale
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # an orphaned "trainer": a process whose command line names backend.train
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "backend.train"],
                              start_new_session=True)
    rid = seed_run(status=RUNNING, worker_id=f"{HOST}:{dead.pid}", heartbeat_at=utcnow(), pid=orphan.pid)
    alive = seed_run(status=RUNNING, worker_id=f"{HOST}:{os.getpid()}", heartbeat_at=utcnow())
    assert reap_stale() == [rid]
    orphan.wait(10)
    assert not pid_alive(orphan.pid)
    with read_session() as s:
        r = s.get(Run, rid)
        assert r.status == CRASHED and "retry resumes" in r.error
        assert s.get(Run, alive).status == RUNNING


def test_jobs_tasks_is_the_huey_instance_however_imported():
    import jobs
    import jobs.tasks
    from jobs import tasks
    from jobs.queue import huey
    t2 = importlib.import_module("jobs.tasks")
    assert isinstance(jobs.tasks, Huey) and jobs.tasks is tasks is huey is t2
    assert "jobs.worker.run_training" in huey._registry._registry
    from huey.utils import load_class  # what huey_consumer does with its argument
    assert load_class("jobs.tasks") is huey and load_class("jobs.queue.huey") is huey


def test_tail_reads_complete_lines_only(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"event": "step", "epoch": 1, "step": 1, "split": "train", "metrics": {"loss": 1.5, "x": NaN}}\n{"event": "ep')
    ev, off = read_events(p, 0)
    assert len(ev) == 1 and 0 < off < p.stat().st_size
    assert [r["name"] for r in metric_rows(ev)] == ["loss"]
    assert read_events(p, off) == ([], off)
    with p.open("a") as f:
        f.write('och", "epoch": 1, "step": 1, "split": "val", "metrics": {"video_top1": 0.5}}\n')
    ev, off2 = read_events(p, off)
    assert ev[0]["event"] == "epoch" and off2 == p.stat().st_size
    assert error_line("x\nusage: y\nerror: dataset has no videos\n") == "dataset has no videos"
    assert hparam_args({"batch_size": 2, "progress": True, "amp": "bf16", "threads": 3, "gpus": 1,
                        "lr": None}) == ["--batch-size=2", "--progress", "--amp=bf16"]


@pytest.mark.parametrize("raw", ["fast", "", "0", "-1", "nan"])
def test_a_bad_heartbeat_period_falls_back_with_one_warning(raw, monkeypatch, capsys):
    """CSN_HEARTBEAT_S that is not a positive number would stop the heartbeat thread at its
    first sleep; it is the default instead, said once."""
    from jobs import liveness

    monkeypatch.setattr(liveness, "_warned", set())
    monkeypatch.setenv("CSN_HEARTBEAT_S", raw)
    assert liveness.heartbeat_s() == 2.0 and liveness.heartbeat_s() == 2.0
    out = capsys.readouterr().out
    assert out.count("CSN_HEARTBEAT_S") == 1 and "using 2" in out
    monkeypatch.setenv("CSN_HEARTBEAT_S", "0.5")
    assert liveness.heartbeat_s() == 0.5 and not capsys.readouterr().out


def test_reaper_handles_a_running_row_without_heartbeat(store):
    """A running row that never beat (e.g. written by hand) is reaped with a readable error."""
    from jobs.api import worker_status
    from jobs.liveness import reap_stale
    rid = seed_run(status=RUNNING, worker_id="elsewhere:1", heartbeat_at=None)
    status = worker_status()  # used to raise TypeError formatting the missing heartbeat
    assert rid in status["reaped"]
    with read_session() as s:
        r = s.get(Run, rid)
        assert r.status == CRASHED and "last heartbeat never" in r.error
    assert reap_stale() == []


def test_malformed_events_give_no_rows_instead_of_stopping_ingestion():
    events = [{"event": "step", "metrics": [1], "epoch": 1, "step": 1},           # metrics not a dict
              {"event": "step", "metrics": {"loss": 0.5}, "epoch": "x", "step": None, "split": 5},
              {"event": "epoch", "metrics": {"loss": 0.4}, "epoch": 2, "step": 9, "split": "train"}]
    rows = metric_rows(events)
    assert [(r["epoch"], r["step"], r["split"], r["value"]) for r in rows] == [(0, 0, "", 0.5), (2, 9, "train", 0.4)]
