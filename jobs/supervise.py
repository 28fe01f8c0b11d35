"""Run one training run: spawn ``python -m backend.train`` and mirror it into the database.

The trainer runs in its own process group with its thread count pinned; its stdout/stderr go
to ``RUN_DIR/train.log``. Every second the supervisor ingests new ``metrics.jsonl`` lines
(byte offset kept in the run row, points de-duplicated on their unique key), records
checkpoints, progress and the heartbeat, and checks the run's cancel flag. A supervisor whose
run is no longer its attempt's (reaped, or retried and claimed again) stops its trainer and
writes nothing more; when the trainer exits, what is left of its process group is stopped.

A run starts only when its resource request fits what this worker has free
(:mod:`jobs.resources`); it gets exactly its GPUs through ``CUDA_VISIBLE_DEVICES`` and its
thread budget, and ``gpus > 1`` runs under ``torchrun --standalone --nproc_per_node=N``.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db import (CANCELLED, CRASHED, FAILED, QUEUED, RUNNING, SUCCEEDED, Checkpoint, Run,
                add_metrics, read_session, runs_dir, utcnow, write)
from db.config import REPO

from .hparams import hparam_args, validate_hparams
from .liveness import HOST, heartbeat_s, kill_group, worker_id
from .resources import fit, host_lock, parse_ids, resolve, worker_gpus, worker_threads
from .tail import is_video_top1, metric_rows, read_events

LOG_TAIL_CHARS = 4000
_active: dict[int, tuple[subprocess.Popen, Path, int, int]] = {}  # run id: proc, log, start, attempt
_active_lock = threading.Lock()
_shutting_down = threading.Event()
SHUTDOWN_ERROR = "worker shut down during the run; retry resumes from the last checkpoint"
INTERRUPTED_ERROR = "supervisor interrupted (Ctrl-C); retry resumes from the last checkpoint"
LOST = "lost"  # execute()'s answer when the run row is no longer its attempt's (nothing recorded)


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
    from backend.csn import ArchSpec, count  # torch-free
    try:
        count(ArchSpec.from_dict(spec))
    except (ValueError, TypeError, KeyError) as e:
        return f"invalid architecture: {e}"
    try:
        validate_hparams(hparams)
    except ValueError as e:
        return str(e)
    if not dataset or not Path(dataset).exists():
        return f"dataset not found: {dataset!r}"
    return None


def _tail(log: Path, start: int = 0) -> str:
    try:
        with log.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(start, size - LOG_TAIL_CHARS))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def error_line(text: str) -> str | None:
    """The message of the last ``error: ...`` line (argparse's ``prog: error: ...`` too)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("error:"):
            return line[len("error:"):].strip()
        if ": error: " in line:
            return line.split(": error: ", 1)[1].strip()
    return None


CAUSES = {signal.SIGKILL: "most likely the kernel's out-of-memory killer (see `dmesg`); try a "
                          "smaller batch size, clip or fewer data-loader workers",
          signal.SIGSEGV: "a crash in native code", signal.SIGBUS: "often a full /dev/shm "
          "(data-loader workers' shared memory)", signal.SIGTERM: "stopped from outside the worker",
          signal.SIGINT: "interrupted from outside the worker"}


def exit_reason(rc: int, tail: str) -> str:
    """Why the trainer exited with ``rc``: the signal that killed it (or one of its torchrun
    ranks) with the likely cause, else its last ``error:`` line, else the status."""
    m = re.findall(r"exitcode\s*:\s*-(\d+)", tail)
    signum = -rc if rc < 0 else int(m[-1]) if m else None
    if signum:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        cause = CAUSES.get(signum)
        return f"trainer killed by {name} (signal {signum})" + (f": {cause}" if cause else "")
    return error_line(tail) or f"trainer exited with status {rc}"


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
    if job["devices"] is not None:          # None: a tracked run keeps its node's devices
        env["CUDA_VISIBLE_DEVICES"] = ",".join(job["devices"])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return argv, env


def _sync(run_id: int, attempt: int, events: list[dict[str, Any]], offset: int, run_dir: Path,
          pid: int | None) -> str | None:
    """Store new events, progress and heartbeat; returns why to stop the trainer: LOST (the row
    is not this attempt's any more: nothing is written), CANCELLED, or None."""
    rows = metric_rows(events)

    def sync(s):
        r = s.get(Run, run_id)
        if not _owns(r, attempt):
            return LOST
        add_metrics(s, run_id, rows)
        for ev in events:
            for k in ("epoch", "step", "total_steps", "total_epochs"):
                if isinstance(ev.get(k), int):
                    setattr(r, k, ev[k])
            if ev.get("event") == "checkpoint":
                path = ev.get("path") or str(run_dir / "checkpoints" / f"epoch_{int(ev.get('epoch') or 0):04d}.pt")
                path = str(Path(run_dir, path)) if not os.path.isabs(path) else path
                if not s.query(Checkpoint).filter_by(run_id=run_id, path=path).first():
                    s.add(Checkpoint(run_id=run_id, epoch=int(ev.get("epoch") or 0), path=path,
                                     metrics=ev.get("metrics") or {}))
        for row in rows:
            if row["split"] == "val" and is_video_top1(row["name"]):
                if r.best_val_video_top1 is None or row["value"] > r.best_val_video_top1:
                    r.best_val_video_top1 = row["value"]
        r.metrics_offset, r.heartbeat_at = offset, utcnow()
        if pid is not None:
            r.pid = pid
        return CANCELLED if r.cancel_requested else None
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
    it (see :func:`_sync`), if we did: a stop counts only while the trainer still runs."""
    stop, last, pid = None, 0.0, proc.pid
    while True:
        rc = proc.poll()
        events, offset = read_events(run_dir / "metrics.jsonl", offset)
        now = time.monotonic()
        if events or rc is not None or now - last >= min(1.0, heartbeat_s()):
            last = now
            why = _sync(run_id, attempt, events, offset, run_dir, pid)
            pid = None
            if why and rc is None and stop is None:
                stop = why
                kill_group(proc.pid)
        if rc is not None:
            return rc, stop
        time.sleep(0.25)


def _outcome(rc: int, cancelled: bool, tail: str) -> tuple[str, str | None]:
    """Status and error from the exit code: 0 succeeded even if a cancel or shutdown came late."""
    if rc == 0:
        return SUCCEEDED, None
    if cancelled:
        return CANCELLED, None
    if _shutting_down.is_set():
        return CRASHED, SHUTDOWN_ERROR          # we stopped the trainer ourselves
    return FAILED, exit_reason(rc, tail)


def execute(run_id: int, job: dict[str, Any]) -> str:
    """Run a claimed (``running``) run's trainer to the end, mirroring it into the store.
    Returns its final status, or :data:`LOST` when the run was taken from this attempt."""
    run_dir, attempt = Path(job["out"]), job.get("attempt", 1)   # jobs.track's row: attempts=1
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
    try:
        rc, stop = _watch(run_id, attempt, proc, run_dir, job["offset"])
        kill_group(proc.pid, grace=1.0)   # what is left of its group: ranks of a killed torchrun
    except BaseException as e:
        kill_group(proc.pid, grace=1.0)
        err = (SHUTDOWN_ERROR if _shutting_down.is_set() else
               INTERRUPTED_ERROR if isinstance(e, KeyboardInterrupt) else None)
        _finish(run_id, attempt, CRASHED if err else FAILED, err or f"supervisor error: {e!r}",
                _tail(log, log_start))
        raise
    finally:
        with _active_lock:
            _active.pop(run_id, None)
    tail = _tail(log, log_start)
    status, err = _outcome(rc, stop == CANCELLED, tail)
    return status if _finish(run_id, attempt, status, err, tail) else LOST


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
