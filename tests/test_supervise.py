"""The supervisor against a real SQLite store with small shell launchers standing in for the
trainer: leftover processes of its group, a run taken over by a newer attempt, a cancel or a
shutdown that comes after the trainer finished, Ctrl-C in ``python -m jobs.track``; the reaper
and retry reading the trainer's outcome file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

import db
from jobs import supervise as sup
from jobs.liveness import pid_alive
from tests.helpers.jobs import REPO, tiny_spec, wait_for
from tests.helpers.runs import seed_run


@pytest.fixture()
def claimed(store, tmp_path, monkeypatch):
    """Factory: a run claimed by this process (``_claim``), its job running ``sh -c SCRIPT``."""
    monkeypatch.setenv("CSN_GPUS", "")

    def make(script: str) -> tuple[int, dict]:
        rid = seed_run(dataset=str(tmp_path), gpus=0, queued_at=db.utcnow())
        job = sup._claim(rid)
        assert isinstance(job, dict), job
        return rid, {**job, "launcher": ["sh", "-c", script]}
    return make


def _row(rid: int) -> db.Run:
    with db.read_session() as s:
        return s.get(db.Run, rid)


def _pid(path: Path) -> int:
    return wait_for(lambda: path.exists() and path.read_text().strip() and int(path.read_text()),
                    10, f"{path.name} to be written")


def _kill(pid: int | None) -> None:
    """Clean up a process a failing test left behind."""
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_children_of_a_killed_trainer_are_stopped(claimed, tmp_path):
    """A torchrun agent SIGKILLed by the OOM killer leaves its ranks in the group: they go too."""
    child = tmp_path / "child.pid"
    rid, job = claimed(f"sleep 600 & echo $! > {child}; kill -9 $$")
    pid = None
    try:
        status = sup.execute(rid, job)
        pid = _pid(child)
        wait_for(lambda: not pid_alive(pid), 5, "the trainer's left-over child to be stopped")
        r = _row(rid)
        assert status == r.status == db.FAILED and "SIGKILL" in r.error and r.pid is None
        got = json.loads(Path(r.output_dir, "outcome.json").read_text())   # written for the trainer
        assert (got["exit_status"], got["attempt"]) == (-signal.SIGKILL, f"{rid}:{job['attempt']}")
    finally:
        _kill(pid)


@pytest.mark.parametrize("taken", [{"attempts": 2}, {"worker_id": "elsewhere:1"},
                                   {"status": db.CRASHED, "error": "reaped"}],
                         ids=["retried-here", "retried-elsewhere", "reaped"])
def test_a_stale_supervisor_stops_its_trainer_and_leaves_the_run_alone(claimed, tmp_path, taken):
    trainer = tmp_path / "trainer.pid"
    rid, job = claimed(f"echo $$ > {trainer}; exec sleep 600")
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(sup.execute(rid, job)))
    t.start()
    pid = None
    try:
        pid = _pid(trainer)
        wait_for(lambda: _row(rid).pid == pid, 10, "the supervisor to record the trainer")
        hb = db.utcnow() - timedelta(minutes=5)

        def take(s):   # the reaper, or a retry claimed by another attempt
            r = s.get(db.Run, rid)
            r.heartbeat_at, r.pid, r.metrics_offset = hb, None, 7
            for k, v in taken.items():
                setattr(r, k, v)
        db.write(take)
        before = {c: getattr(_row(rid), c) for c in ("status", "error", "worker_id", "attempts",
                                                       "pid", "metrics_offset", "finished_at")}
        t.join(15)
        assert not t.is_alive(), "the trainer of a run taken from this attempt is still running"
        assert got == [sup.LOST] and not pid_alive(pid)
        r = _row(rid)
        assert {c: getattr(r, c) for c in before} == before
        assert db.as_utc(r.heartbeat_at) == db.as_utc(hb)
    finally:
        _kill(pid)
        t.join(15)


def test_a_trainer_that_finished_succeeds_though_a_cancel_came_late(claimed):
    rid, job = claimed("")
    cancel = f"import db; db.write(lambda s: setattr(s.get(db.Run, {rid}), 'cancel_requested', True))"
    # the trainer is done (it ignores SIGTERM from here on) when the cancel arrives
    job["launcher"] = ["sh", "-c", f"trap '' TERM; {sys.executable} -c \"{cancel}\" && exit 0"]
    assert sup.execute(rid, job) == db.SUCCEEDED
    r = _row(rid)
    assert r.status == db.SUCCEEDED and r.cancel_requested


def test_shutdown_after_the_trainer_exited_records_its_exit_code(claimed, tmp_path, monkeypatch):
    rid, job = claimed("exit 0")
    proc = subprocess.Popen(["sh", "-c", "exit 0"], start_new_session=True)
    proc.wait()
    monkeypatch.setattr(sup, "_shutting_down", threading.Event())
    monkeypatch.setitem(sup._active, rid, (proc, tmp_path / "train.log", 0, job["attempt"]))
    sup._on_exit()
    assert _row(rid).status == db.SUCCEEDED


def test_ctrl_c_in_jobs_track_marks_the_run_crashed(store, tmp_path):
    spec, trainer = tmp_path / "spec.json", tmp_path / "trainer.pid"
    spec.write_text(json.dumps(tiny_spec()))
    track = subprocess.Popen(
        [sys.executable, "-m", "jobs.track", "--arch", str(spec), "--data", str(tmp_path), "--",
         "sh", "-c", f"echo $$ > {trainer}; exec sleep 600"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pid = None
    try:
        pid = _pid(trainer)
        wait_for(lambda: _row(1) is not None and _row(1).pid == pid, 10, "the run to record its trainer")
        track.send_signal(signal.SIGINT)
        out = track.communicate(timeout=20)[0].decode(errors="replace")
        assert track.returncode != 0 and not pid_alive(pid), out
        r = _row(1)
        assert (r.status, r.error) == (db.CRASHED, sup.INTERRUPTED_ERROR), out
    finally:
        _kill(pid)
        if track.poll() is None:
            track.kill()
            track.wait()


def _stale_run(tmp_path: Path, worker: str, attempts: int = 1, **kw) -> tuple[int, Path]:
    """A ``running`` row whose heartbeat is long gone, with a run folder."""
    out = tmp_path / "run"
    out.mkdir(parents=True, exist_ok=True)
    old = db.utcnow() - timedelta(minutes=10)
    rid = seed_run(dataset=str(tmp_path), status=db.RUNNING, worker_id=worker, attempts=attempts,
                   heartbeat_at=old, started_at=old, output_dir=str(out), **kw)
    return rid, out


def _write_metrics(out: Path, steps: int) -> None:
    lines = [json.dumps({"event": "step", "split": "train", "epoch": 1, "step": i, "total_steps": steps,
                         "metrics": {"loss": 1.0 / i}, "time": 1.7e9 + i}) for i in range(1, steps + 1)]
    (out / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_the_reaper_skips_runs_this_process_supervises(store, tmp_path):
    from jobs import liveness
    rid, _ = _stale_run(tmp_path, liveness.worker_id())
    liveness.supervising(rid, True)
    try:
        assert liveness.reap_stale() == [] and _row(rid).status == db.RUNNING
    finally:
        liveness.supervising(rid, False)
    assert liveness.reap_stale() == [rid] and _row(rid).status == db.CRASHED


def test_the_reaper_and_retry_end_a_run_as_its_trainers_outcome_says(store, tmp_path):
    from jobs import api, liveness
    from jobs.outcome import write_outcome
    rid, out = _stale_run(tmp_path, "elsewhere:1", metrics_offset=0)
    _write_metrics(out, 5)
    (out / "train.log").write_text("usage: x\nerror: no readable clips in epoch 1\n")
    write_outcome(out, 1, attempt=f"{rid}:1")
    assert liveness.reap_stale() == []                  # not crashed: the trainer failed by itself
    r = _row(rid)
    assert (r.status, r.error, r.step) == (db.FAILED, "no readable clips in epoch 1", 5)
    # a reaped run whose trainer exited 0 afterwards: retry finds it finished, every point in
    rid2, out2 = _stale_run(tmp_path / "b", "elsewhere:1", attempts=2)
    _write_metrics(out2, 7)
    write_outcome(out2, 0, attempt=f"{rid2}:1")         # an earlier attempt's file: ignored
    assert liveness.reap_stale() == [rid2] and _row(rid2).status == db.CRASHED
    write_outcome(out2, 0, attempt=f"{rid2}:2")
    assert api.retry_run(rid2) is False
    r = _row(rid2)
    assert (r.status, r.error, r.step, r.pid) == (db.SUCCEEDED, None, 7, None)
    assert [m["step"] for m in api.get_metrics(rid2, name="loss")] == list(range(1, 8))


def test_the_trainer_leaves_its_exit_status_in_its_run_folder(tmp_path, monkeypatch):
    from backend import train
    monkeypatch.setenv("CSN_RUN_ATTEMPT", "3:2")
    rc = train.cli(["--arch", "ir-csn-26", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)])
    got = json.loads((tmp_path / "outcome.json").read_text())
    assert rc == got["exit_status"] != 0 and got["attempt"] == "3:2" and got["pid"] == os.getpid()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0, True, "60", 1e9])
def test_enqueue_refuses_a_bad_stall_timeout(store, bad):
    from jobs import api
    with pytest.raises(ValueError, match="^stall_timeout must be"):
        api.enqueue_run(tiny_spec(), str(store), {}, stall_timeout=bad)


def test_a_supervisor_whose_trainer_exited_leaves_a_newer_process_with_its_pid_alone():
    """The exited trainer's pid now leads another claim's trainer (pid reuse): not stopped."""
    other = subprocess.Popen(["sleep", "600"], start_new_session=True)

    class Exited:          # the exited trainer, as Popen sees it after reaping
        pid = other.pid

        def poll(self) -> int:
            return 0
    try:
        sup._stop_group(Exited())
        assert pid_alive(other.pid)
        sup._stop_group(other)                   # a trainer still running: its group goes
        assert other.wait(10) == -signal.SIGTERM
    finally:
        _kill(other.pid if other.poll() is None else None)
        other.wait(10)
