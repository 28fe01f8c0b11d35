"""Paused workers and stalled trainers, end to end: real ``huey_consumer jobs.tasks`` processes
SIGSTOPped and SIGCONTed while real tiny trainings run, against a real SQLite file."""
from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

import db
from jobs.liveness import pid_alive
from tests.helpers.jobs import TINY_HP, Consumer, tiny_spec, wait_for
from tests.test_jobs import consumers, dataset, env, jsonl_keys, num_classes  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow
LONG_HP = {**TINY_HP, "epochs": 5000, "max_steps_per_epoch": 2, "eval_every": 1000}


def _row(rid: int) -> db.Run:
    with db.read_session() as s:
        return s.get(db.Run, rid)


def _age(t) -> float:
    return (db.utcnow() - db.as_utc(t)).total_seconds()


def pause(c: Consumer, store: Path) -> None:
    """SIGSTOP the consumer at a moment it holds no write transaction (else every other
    writer of the SQLite file would wait for it)."""
    while True:
        os.kill(c.proc.pid, signal.SIGSTOP)
        try:
            con = sqlite3.connect(store / "csn.db", timeout=0.2, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("ROLLBACK")
                return
            finally:
                con.close()
        except sqlite3.OperationalError:
            os.kill(c.proc.pid, signal.SIGCONT)
            time.sleep(0.05)


def resume(c: Consumer) -> None:
    os.kill(c.proc.pid, signal.SIGCONT)


def _start(consumers, monkeypatch, stale: str, hp: dict, data: Path) -> tuple[Consumer, int]:
    from jobs import api
    monkeypatch.setenv("CSN_STALE_S", stale)
    w = consumers(CSN_STALE_S=stale, CSN_HEARTBEAT_S="0.2")
    wait_for(lambda: api.worker_status()["alive"], 90, "worker heartbeat", w.text)
    rid = api.enqueue_run(tiny_spec(num_classes(data)), str(data), hp)
    wait_for(lambda: _row(rid).step >= 1 and _row(rid).pid, 180, "training steps", w.text)
    return w, rid


@pytest.mark.parametrize("reaper", ["woken-worker", "app"])
def test_a_trainer_that_exits_0_while_its_worker_is_paused_succeeds(dataset, consumers, env,  # noqa: F811
                                                                   monkeypatch, reaper):
    """The worker sleeps through its trainer's end; whoever notices first (the worker on
    waking, or the app reaping the stale heartbeat) ends the run ``succeeded``, every point in."""
    from jobs import api
    w, rid = _start(consumers, monkeypatch, "2", {**TINY_HP, "epochs": 3, "max_steps_per_epoch": 3},
                    dataset)
    store, pid = Path(env["CSN_DATA_DIR"]), _row(rid).pid
    pause(w, store)
    try:
        assert pid_alive(pid), "the trainer ended before the worker was paused"
        wait_for(lambda: not pid_alive(pid), 180, "the trainer to finish during the pause")
        wait_for(lambda: _age(_row(rid).heartbeat_at) > 3, 30, "the run's heartbeat to go stale")
        if reaper == "app":
            api.worker_status()               # the app's reaper, while the worker still sleeps
            assert _row(rid).status == db.SUCCEEDED, _row(rid).error
    finally:
        resume(w)
    wait_for(lambda: _row(rid).status in db.FINISHED, 60, "the run to end", w.text)
    r = api.get_run(rid)
    assert (r["status"], r["error"], r["attempts"]) == (db.SUCCEEDED, None, 1), (r, w.text())
    got = {(x["event"], x["split"], x["epoch"], x["step"], x["name"]) for x in api.get_metrics(rid)}
    assert got == jsonl_keys(Path(r["output_dir"])) and r["progress"] == 1.0
    assert r["step"] == r["total_steps"] > 0
    time.sleep(0.5)                           # a woken supervisor must not rewrite the row
    assert api.get_run(rid)["status"] == db.SUCCEEDED and w.proc.poll() is None


def test_a_woken_worker_never_kills_its_own_live_trainer(dataset, consumers, env, monkeypatch):  # noqa: F811
    """Ten pauses longer than CSN_STALE_S: after each, the worker renews and goes on."""
    from jobs import api
    w, rid = _start(consumers, monkeypatch, "1", LONG_HP, dataset)
    store, pid = Path(env["CSN_DATA_DIR"]), _row(rid).pid
    wid = _row(rid).worker_id
    for i in range(10):
        pause(w, store)
        try:
            wait_for(lambda: _age(_row(rid).heartbeat_at) > 1.5, 30, "a stale heartbeat")
        finally:
            resume(w)
        woke = db.utcnow()

        beats: set = set()

        def beats_since_waking() -> bool:   # two beats: the first one's reaping is done
            with db.read_session() as s:
                seen = db.as_utc(s.get(db.Worker, wid).last_seen)
            if seen > woke:
                beats.add(seen)
            return len(beats) >= 2
        wait_for(beats_since_waking, 60, "the woken worker to beat", w.text, every=0.05)
        wait_for(lambda: _age(_row(rid).heartbeat_at) < 1, 60, "the run's heartbeat renewed", w.text)
        r = _row(rid)
        assert r.status == db.RUNNING and pid_alive(pid), (i, r.status, r.error, w.text()[-3000:])
    assert api.cancel_run(rid)
    wait_for(lambda: _row(rid).status == db.CANCELLED, 60, "cancellation", w.text)


def test_a_stopped_trainer_is_reported_stalled_then_fails_on_stall_timeout(dataset, consumers,  # noqa: F811
                                                                          env, monkeypatch):
    from app.runs_data import run_row, stall_note
    from jobs import api
    monkeypatch.setenv("CSN_STALL_WARN_S", "2")
    w, rid = _start(consumers, monkeypatch, "20", LONG_HP, dataset)
    pid = _row(rid).pid
    os.kill(pid, signal.SIGSTOP)
    try:
        note = wait_for(lambda: stall_note(api.get_run(rid)), 60, "the run to be shown stalled", w.text)
        r = api.get_run(rid)
        assert note.startswith("no progress for ") and r["status"] == db.RUNNING
        assert _age(r["heartbeat_at"]) < 20         # the supervisor's heartbeat alone looks fine
        assert run_row(r)["liveness"].startswith("no progress for ")
        db.write(lambda s: setattr(s.get(db.Run, rid), "stall_timeout", 2.0))
        wait_for(lambda: _row(rid).status in db.FINISHED, 60, "the stall timeout", w.text)
        r = api.get_run(rid)
        assert r["status"] == db.FAILED and "stall_timeout 2 s" in r["error"], r["error"]
        assert r["error"].startswith("no progress for ") and stall_note(r) is None
        wait_for(lambda: not pid_alive(pid), 30, "the stalled trainer to be stopped")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGCONT)
