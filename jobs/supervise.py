"""Run one training run: spawn ``python -m backend.train`` and mirror it into the database.

The trainer runs in its own process group with its thread count pinned; its stdout/stderr go
to ``RUN_DIR/train.log``. Every second the supervisor ingests new ``metrics.jsonl`` lines
(byte offset kept in the run row, points de-duplicated on their unique key), records
checkpoints, progress and the heartbeat, and checks the run's cancel flag. A supervisor whose
run is no longer its attempt's (reaped, or retried and claimed again) stops its trainer and
writes nothing more; when the trainer exits, what is left of its process group is stopped.
The trainer's exit status is kept in ``RUN_DIR/outcome.json`` (:mod:`jobs.outcome`; written
here when a signal killed it), and a run whose trainer writes no event for the row's
``stall_timeout`` seconds (counted while this supervisor runs) is stopped and failed.

A run starts only when its resource request fits what this worker has free
(:mod:`jobs.resources`); it gets exactly its GPUs through ``CUDA_VISIBLE_DEVICES`` and its
thread budget, and ``gpus > 1`` runs under ``torchrun --standalone --nproc_per_node=N``.
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db import (CANCELLED, CRASHED, FAILED, QUEUED, RUNNING, SUCCEEDED, Run, read_session,
                runs_dir, utcnow, write)
from db.config import REPO

from .hparams import hparam_args, validate_hparams
from .liveness import HOST, heartbeat_s, kill_group, no_progress_text, pid_alive, supervising, worker_id
from .outcome import (ATTEMPT_ENV, attempt_tag, clear_outcome, ingest, read_outcome, settle_in,
                      write_outcome)
from .resources import fit, host_lock, parse_ids, resolve, worker_gpus, worker_threads
from .tail import read_events
from .trainer_exit import LOG_TAIL_CHARS, error_line, exit_reason, log_tail as _tail  # noqa: F401 - re-exported

_active: dict[int, tuple[subprocess.Popen, Path, int, int]] = {}  # run id: proc, log, start, attempt
_active_lock = threading.Lock()
_shutting_down = threading.Event()
SHUTDOWN_ERROR = "worker shut down during the run; retry resumes from the last checkpoint"
INTERRUPTED_ERROR = "supervisor interrupted (Ctrl-C); retry resumes from the last checkpoint"
LOST = "lost"  # execute()'s answer when the run row is no longer its attempt's (nothing recorded)
STALLED = "stalled"  # _watch()'s reason to stop a trainer that made no progress for stall_timeout


def train_threads(hparams: dict[str, Any]) -> int:
    """Torch threads for the trainer: ``hparams["threads"]``, else ``CSN_TRAIN_THREADS``, else 1."""
    return max(1, int(hparams.get("threads") or os.environ.get("CSN_TRAIN_THREADS") or 1))


WAIT = "waiting"   # supervise()'s answer when the run does not fit yet (the task retries later)


def _claim_in(s, run_id: int, have: list[str], budget: int) -> dict[str, Any] | str | None:
    r = s.get(Run, run_id)
    if r is None or r.status != QUEUED:
        return None
    if r.cancel_requested:
        r.status, r.finished_at = CANCELLED, utcnow()
        return None
    hp = dict(r.hparams or {})
    req = resolve(r.gpus, r.threads or train_threads(hp), have)
    busy = s.execute(select(Run.devices, Run.threads, Run.worker_id).where(
        Run.status == RUNNING, Run.worker_id.like(f"{HOST}:%"))).all()
    devices, why = fit(req, have, budget, {d for devs, _, _ in busy for d in parse_ids(devs or "")},
                       sum(t or 0 for _, t, w in busy if w == worker_id()))
    if devices is None:
        r.wait_reason = f"{why} on worker {worker_id()}"
        return WAIT
    now = utcnow()
    r.status, r.worker_id, r.heartbeat_at, r.started_at = RUNNING, worker_id(), now, now
    r.finished_at, r.error, r.pid, r.wait_reason = None, None, None, None
    r.devices, r.threads = ",".join(devices), req.threads
    r.attempts += 1
    r.output_dir = r.output_dir or str(runs_dir() / f"run_{r.id:05d}")
    return {"spec": r.spec, "dataset": r.dataset, "hparams": hp, "out": r.output_dir,
            "offset": r.metrics_offset, "devices": devices, "nproc": max(1, req.gpus),
            "threads": req.threads, "attempt": r.attempts}


def _claim(run_id: int) -> dict[str, Any] | str | None:
    """The job to run (status now ``running``), :data:`WAIT`, or None (nothing to do)."""
    have, budget = worker_gpus(), worker_threads()
    with host_lock():
        return write(lambda s: _claim_in(s, run_id, have, budget))


def _owns(r: Run | None, attempt: int) -> bool:
    """Whether row ``r`` is still this worker's running attempt ``attempt`` (not reaped, not
    retried and claimed again)."""
    return (r is not None and r.status == RUNNING and r.worker_id == worker_id()
            and r.attempts == attempt)


def _finish(run_id: int, attempt: int, status: str, error: str | None,
            log_tail: str | None = None) -> bool:
    """Record the end of attempt ``attempt``; False (nothing written) when the row is not its."""
    def fin(s):
        r = s.get(Run, run_id)
        if not _owns(r, attempt):
            return False
        r.status, r.error, r.finished_at, r.pid = status, error, utcnow(), None
        if log_tail is not None:
            r.log_tail = log_tail
        return True
    return write(fin)


def _validate(spec: dict[str, Any], dataset: str, hparams: dict[str, Any]) -> str | None:
    from backend.csn import count  # torch-free
    from backend.csn.loading import spec_from_data
    try:     # bounded: a spec the queue should have refused fails here, quickly
        count(spec_from_data(spec, "spec").spec)
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        return f"invalid architecture: {str(e)[:300]}"
    try:
        validate_hparams(hparams)
    except ValueError as e:
        return str(e)
    if not dataset or not Path(dataset).exists():
        return f"dataset not found: {dataset!r}"
    return None


def command(job: dict[str, Any], run_dir: Path, resume: bool) -> tuple[list[str], dict[str, str]]:
    """The trainer's argv (under torchrun when it has more than one process) and environment:
    exactly its devices in ``CUDA_VISIBLE_DEVICES`` and its threads split over the processes."""
    nproc, threads = job["nproc"], job["threads"]
    per = max(1, threads // nproc)
    launcher = job.get("launcher") or [sys.executable, *(
        ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [])]
    argv = [*launcher, "-m", "backend.train", "--arch", str(run_dir / "spec.json"),
            "--data", job["dataset"], "--out", str(run_dir), "--threads", str(per),
            *hparam_args(job["hparams"]), *(["--resume"] if resume else [])]
    env = dict(os.environ, OMP_NUM_THREADS=str(per), MKL_NUM_THREADS=str(per),
               NUMBA_NUM_THREADS=str(per), PYTHONUNBUFFERED="1",
               OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))  # no spinning on shared cores
    if job.get("tag"):
        env[ATTEMPT_ENV] = job["tag"]           # the trainer's outcome file names its attempt
    if job["devices"] is not None:          # None: a tracked run keeps its node's devices
        env["CUDA_VISIBLE_DEVICES"] = ",".join(job["devices"])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return argv, env


def _sync(run_id: int, attempt: int, events: list[dict[str, Any]], offset: int, run_dir: Path,
          pid: int | None) -> tuple[str | None, Any, float | None]:
    """Store new events, progress and heartbeat. Returns why to stop the trainer (LOST: the row
    is not this attempt's any more, nothing is written; CANCELLED; or None), the trainer's
    progress time and the row's ``stall_timeout``."""
    def sync(s):
        r = s.get(Run, run_id)
        if not _owns(r, attempt):
            return LOST, None, None
        ingest(s, r, events, run_dir)
        r.metrics_offset, r.heartbeat_at = offset, utcnow()
        if pid is not None:
            r.pid = pid
        return CANCELLED if r.cancel_requested else None, r.progress_at, r.stall_timeout
    return write(sync)


def supervise(run_id: int) -> str | None:
    """Run ``run_id`` to completion (or cancellation); returns its final status."""
    job = _claim(run_id)
    if job is None or job == WAIT:
        return job
    return execute(run_id, job)


def _launch(job: dict[str, Any], run_dir: Path) -> tuple[subprocess.Popen, Path, int]:
    """Write the spec, start the trainer with its output appended to ``train.log``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "train.log"
    (run_dir / "spec.json").write_text(json.dumps(job["spec"], indent=1))
    ckpts = run_dir / "checkpoints"
    argv, env = command(job, run_dir, ckpts.is_dir() and any(ckpts.glob("*.pt")))
    clear_outcome(run_dir)
    log_start = log.stat().st_size if log.exists() else 0
    with log.open("ab") as lf:
        lf.write(f"$ {' '.join(argv)}\n".encode())
        lf.flush()
        proc = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True)
    return proc, log, log_start


def _watch(run_id: int, attempt: int, proc: subprocess.Popen, run_dir: Path,
           offset: int) -> tuple[int, str | None]:
    """Mirror the trainer into the store until it exits; returns its exit code and why we stopped
    it (see :func:`_sync`, or STALLED), if we did: a stop counts only while the trainer still
    runs. Quiet time is this process's monotonic time (a suspended machine does not count)."""
    stop, last, pid = None, 0.0, proc.pid
    seen, quiet_since = None, time.monotonic()
    while True:
        rc = proc.poll()
        events, offset = read_events(run_dir / "metrics.jsonl", offset)
        now = time.monotonic()
        if events or rc is not None or now - last >= min(1.0, heartbeat_s()):
            last = now
            why, progress_at, stall_timeout = _sync(run_id, attempt, events, offset, run_dir, pid)
            pid = None
            if progress_at != seen:
                seen, quiet_since = progress_at, now
            if why is None and stall_timeout and now - quiet_since > stall_timeout:
                why = STALLED
            if why and rc is None and stop is None:
                stop = why
                kill_group(proc.pid)
        if rc is not None:
            return rc, stop
        time.sleep(0.25)


def stall_error(stall_timeout: float) -> str:
    """Why a stalled run failed."""
    return (f"{no_progress_text(stall_timeout)} (stall_timeout {stall_timeout:g} s): the trainer "
            "was stopped; retry resumes from the last checkpoint")


def _outcome(rc: int, cancelled: bool, tail: str, stalled: float | None = None) -> tuple[str, str | None]:
    """Status and error from the exit code: 0 succeeded even if a cancel or shutdown came late."""
    if rc == 0:
        return SUCCEEDED, None
    if cancelled:
        return CANCELLED, None
    if stalled:
        return FAILED, stall_error(stalled)
    if _shutting_down.is_set():
        return CRASHED, SHUTDOWN_ERROR          # we stopped the trainer ourselves
    return FAILED, exit_reason(rc, tail)


def execute(run_id: int, job: dict[str, Any]) -> str:
    """Run a claimed (``running``) run's trainer to the end, mirroring it into the store.
    Returns its final status, or :data:`LOST` when the run was taken from this attempt."""
    run_dir, attempt = Path(job["out"]), job.get("attempt", 1)   # jobs.track's row: attempts=1
    job = {**job, "tag": attempt_tag(run_id, attempt)}
    try:                       # whatever goes wrong before the trainer runs ends the run here
        problem = _validate(job["spec"], job["dataset"], job["hparams"])
        if problem:
            return FAILED if _finish(run_id, attempt, FAILED, problem) else LOST
        proc, log, log_start = _launch(job, run_dir)
    except Exception as e:  # noqa: BLE001 - recorded on the run (disk full, say)
        msg = f"could not start the trainer: {type(e).__name__}: {e}"
        return FAILED if _finish(run_id, attempt, FAILED, msg) else LOST
    with _active_lock:
        _active[run_id] = (proc, log, log_start, attempt)
    supervising(run_id, True)
    try:
        rc, stop = _watch(run_id, attempt, proc, run_dir, job["offset"])
        _stop_group(proc)
    except BaseException as e:
        _stop_group(proc)
        err = (SHUTDOWN_ERROR if _shutting_down.is_set() else
               INTERRUPTED_ERROR if isinstance(e, KeyboardInterrupt) else None)
        _finish(run_id, attempt, CRASHED if err else FAILED, err or f"supervisor error: {e!r}",
                _tail(log, log_start))
        raise
    finally:
        supervising(run_id, False)
        with _active_lock:
            _active.pop(run_id, None)
    if stop != LOST:
        _record_exit(run_dir, rc, job["tag"])
    tail = _tail(log, log_start)
    stalled = _stall_timeout(run_id) if stop == STALLED else None
    status, err = _outcome(rc, stop == CANCELLED, tail, stalled)
    if _finish(run_id, attempt, status, err, tail):
        return status
    # reaped while this supervisor was away: the trainer's own outcome may still end it well
    return write(lambda s: settle_in(s, s.get(Run, run_id), attempt)) or LOST


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the trainer's process group, or what is left of it once the trainer has exited
    (ranks of a killed torchrun). After the exit, a live process with the leader's pid is a
    newer one (the kernel reuses a pid only once its old group is empty), say the trainer of
    another claim of this run: it is left alone."""
    if proc.poll() is None or not pid_alive(proc.pid):
        kill_group(proc.pid, grace=1.0)


def _record_exit(run_dir: Path, rc: int, tag: str) -> None:
    """Keep the exit status in ``outcome.json`` when the trainer did not write it (a signal,
    a torchrun agent whose rank failed)."""
    got = read_outcome(run_dir, tag)
    if got is None or got["exit_status"] != rc:
        try:
            write_outcome(run_dir, rc, attempt=tag, by="supervisor")
        except OSError:
            pass


def _stall_timeout(run_id: int) -> float | None:
    with read_session() as s:
        r = s.get(Run, run_id)
        return r.stall_timeout if r is not None else None


@atexit.register
def _on_exit() -> None:
    """The consumer is exiting with runs in flight: stop their trainers, mark them crashed
    (a trainer that has already exited is recorded by its exit code)."""
    _shutting_down.set()
    with _active_lock:
        items = list(_active.items())
    for run_id, (proc, log, log_start, attempt) in items:
        rc = proc.poll()
        kill_group(proc.pid, grace=2.0)
        status, err = ((CRASHED, SHUTDOWN_ERROR) if rc is None else
                       _outcome(rc, False, _tail(log, log_start)))
        try:
            _finish(run_id, attempt, status, err)
        except Exception:
            pass
