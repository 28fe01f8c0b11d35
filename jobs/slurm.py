"""The Slurm executor (``CSN_EXECUTOR=slurm``): each run is one Slurm job.

The Huey worker runs where ``sbatch`` works (a login node). For a run it writes a batch script
into the run directory, submits it with ``sbatch`` and watches it with ``scontrol show job``
(``sacct`` once Slurm has forgotten the job); cancel is ``scancel``. The trainer writes to the
run directory on the shared file system, and the worker ingests ``metrics.jsonl`` and
checkpoints from there exactly as for local runs (:func:`jobs.supervise._sync`), so compute
nodes need the shared directory, not the database.

While the job is pending the run stays ``queued`` with Slurm's reason in ``wait_reason``; it is
``running`` (job id and nodes on the row) while the job runs, again ``queued`` when the job is
requeued, and ends ``succeeded`` / ``failed`` (Slurm's state, reason and exit code) /
``cancelled``. Jobs get ``--requeue`` and ``--signal=B:USR1@CSN_SLURM_SIGNAL_S``: the batch
shell passes the signal to the trainer, which stops after its epoch checkpoint (exit 75), and
the script requeues the job, which resumes from that checkpoint. A run needing more GPUs than
``CSN_SLURM_GPUS_PER_NODE`` spans several nodes: ``srun`` starts one ``torchrun`` per node
with a c10d rendezvous on the first node.

Plain ``sbatch``/``squeue``-family commands rather than ``submitit``: no extra dependency, the
script is readable in the run directory, and the worker needs only the job id and its state.
"""
from __future__ import annotations

import json
import math
import os
import threading
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from db import (CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Run, read_session, runs_dir, utcnow,
                write)
from db.config import REPO

from .executor import cluster_gpus, executor, int_env as _int_env  # noqa: F401 - re-exported
from .liveness import supervising, worker_dead, worker_id
from .slurm_state import Job, job_state
from .supervise import LOST, _sync, _tail, _validate, command, error_line, train_threads
from .tail import read_events

RESUME_EXIT = 75          # backend.train.RESUME_EXIT: checkpointed on SIGUSR1, resume continues
PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING",
           "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
ENDED_OK = {"COMPLETED"}
MAX_OPTION_CHARS = 2000


def _text_env(name: str) -> str | None:
    v = os.environ.get(name, "").strip()
    if len(v) > MAX_OPTION_CHARS or "\n" in v:
        raise ValueError(f"{name} must be one line of at most {MAX_OPTION_CHARS} characters")
    return v or None


def poll_s() -> float:
    """Seconds between looks at a job (``CSN_SLURM_POLL_S``)."""
    return float(os.environ.get("CSN_SLURM_POLL_S", "2"))


def layout(gpus: int | None, threads: int) -> tuple[int, int, int]:
    """``(nodes, gpus per node, cpus per task)`` for a run's request within the worker's limits
    (``CSN_SLURM_GPUS_PER_NODE``, ``CSN_SLURM_MAX_NODES``, ``CSN_SLURM_MAX_THREADS``)."""
    per_node = _int_env("CSN_SLURM_GPUS_PER_NODE", 1, 0, 64)
    max_nodes = _int_env("CSN_SLURM_MAX_NODES", 1, 1, 1024)
    max_threads = _int_env("CSN_SLURM_MAX_THREADS", 64, 1, 4096)
    want = (1 if per_node else 0) if gpus is None else int(gpus)
    if threads > max_threads:
        raise ValueError(f"threads: {threads} is more than this worker allows (CSN_SLURM_MAX_THREADS={max_threads})")
    if want <= per_node:
        return 1, want, threads
    nodes = math.ceil(want / max(per_node, 1))
    if per_node == 0 or want % per_node:
        raise ValueError(f"gpus: {want} GPUs span nodes only as a multiple of "
                         f"CSN_SLURM_GPUS_PER_NODE={per_node}")
    if nodes > max_nodes:
        raise ValueError(f"gpus: {want} GPUs need {nodes} nodes, more than CSN_SLURM_MAX_NODES={max_nodes}")
    return nodes, per_node, threads


def sbatch_options(run_id: int, run_dir: Path, nodes: int, gpus: int, cpus: int) -> list[str]:
    """The ``sbatch`` options: the run's shape plus the worker's partition, account, QOS, time
    limit, signal lead time and ``CSN_SLURM_OPTIONS``."""
    opts = [f"--job-name=csn-run-{run_id}", f"--output={run_dir / 'train.log'}", "--open-mode=append",
            f"--chdir={REPO}", "--requeue", "--parsable", f"--nodes={nodes}", "--ntasks-per-node=1",
            f"--cpus-per-task={cpus}",
            f"--signal=B:USR1@{_int_env('CSN_SLURM_SIGNAL_S', 120, 1, 86400)}"]
    if gpus:
        opts.append(f"--gres=gpu:{gpus}")
    for var, flag in (("CSN_SLURM_PARTITION", "--partition"), ("CSN_SLURM_ACCOUNT", "--account"),
                      ("CSN_SLURM_QOS", "--qos"), ("CSN_SLURM_TIME", "--time")):
        v = _text_env(var)
        if v:
            if not re.fullmatch(r"[\w.:,+-]+", v):
                raise ValueError(f"{var} has characters Slurm does not take")
            opts.append(f"{flag}={v}")
    extra = _text_env("CSN_SLURM_OPTIONS")
    try:
        opts += shlex.split(extra) if extra else []
    except ValueError:
        raise ValueError("CSN_SLURM_OPTIONS is not valid shell words") from None
    return opts


SCRIPT = """#!/bin/bash
# Written by the CSN Explorer worker for run {run_id}; a requeued job runs it again.
cd {repo}
resume=""
if compgen -G {ckpts} > /dev/null; then resume="--resume"; fi
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
addr=$(scontrol show node "$head" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)
port=$((20000 + SLURM_JOB_ID % 20000))
echo "[slurm] job $SLURM_JOB_ID restart ${{SLURM_RESTART_COUNT:-0}} on $SLURM_JOB_NODELIST $resume"
{trap}
{argv} $resume &
child=$!
wait $child; rc=$?
while [ $rc -gt 128 ] && kill -0 $child 2>/dev/null; do wait $child; rc=$?; done
if [ $rc -eq {resume_exit} ]; then
  echo "[slurm] checkpointed on the stop signal; requeueing"
  scontrol requeue "$SLURM_JOB_ID" && sleep 60
fi
exit $rc
"""


def batch_script(job: dict[str, Any], run_dir: Path, nodes: int) -> str:
    """The batch script: the trainer (``srun`` + ``torchrun`` rendezvous over ``nodes`` > 1)."""
    if nodes > 1:
        job = {**job, "launcher": ["srun", "--kill-on-bad-exit=1", sys.executable, "-m",
                                   "torch.distributed.run", f"--nnodes={nodes}",
                                   f"--nproc_per_node={job['nproc']}", "--rdzv-backend=c10d",
                                   "--rdzv-endpoint=@ADDR@", "--rdzv-id=@JOB@"]}
    elif job["nproc"] > 1:
        job = {**job, "launcher": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                   f"--nproc_per_node={job['nproc']}"]}
    argv, _ = command(job, run_dir, resume=False)
    line = " ".join(shlex.quote(a) for a in argv)
    line = line.replace("--rdzv-endpoint=@ADDR@", '--rdzv-endpoint="$addr:$port"')
    line = line.replace("--rdzv-id=@JOB@", '--rdzv-id="$SLURM_JOB_ID"')
    trap = ("trap 'kill -USR1 $child 2>/dev/null' USR1" if nodes == 1 and job["nproc"] == 1 else
            "trap '' USR1   # ranks would have to agree to stop: the last epoch checkpoint serves")
    return SCRIPT.format(run_id=job.get("run_id", ""), repo=shlex.quote(str(REPO)), trap=trap,
                         ckpts=shlex.quote(str(run_dir / "checkpoints")) + "/'*.pt'",
                         argv=line, resume_exit=RESUME_EXIT)


def submit(job: dict[str, Any], run_id: int) -> str:
    """Write the spec and script into the run directory and ``sbatch`` it; the job id."""
    run_dir = Path(job["out"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(json.dumps(job["spec"], indent=1))
    script = run_dir / "slurm_job.sh"
    script.write_text(batch_script({**job, "run_id": run_id}, run_dir, job["nodes"]))
    _, env = command(job, run_dir, resume=False)
    env.pop("CUDA_VISIBLE_DEVICES", None)        # Slurm sets it from the job's GRES
    if not job["gpus_per_node"]:
        env["CUDA_VISIBLE_DEVICES"] = ""          # a CPU run sees no GPU of its node
    opts = sbatch_options(run_id, run_dir, job["nodes"], job["gpus_per_node"], job["threads"])
    p = subprocess.run(["sbatch", *opts, str(script)], capture_output=True, text=True, env=env,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError("sbatch refused the job: " + (p.stderr.strip().splitlines() or ["?"])[-1])
    return p.stdout.strip().split(";")[0]


def scancel(job_id: str) -> bool:
    """Ask Slurm to cancel the job; whether it accepted (else the caller asks again)."""
    try:
        return subprocess.run(["scancel", job_id], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _mine(r: Run | None, attempt: int) -> bool:
    return (r is not None and r.status in (QUEUED, RUNNING) and r.worker_id == worker_id()
            and r.attempts == attempt)


SUBMITTING = "submitting"           # slurm_job while a worker is submitting the run's job
_following: set[int] = set()       # runs whose job a thread of this process follows
_following_lock = threading.Lock()


def _claim_in(s, run_id: int, seen_job: str | None, active: bool) -> dict[str, Any] | None:
    r = s.get(Run, run_id)
    if r is None or r.status != QUEUED or r.slurm_job != seen_job:
        return None
    if r.cancel_requested:
        r.status, r.finished_at = CANCELLED, utcnow()
        return None
    if active and r.worker_id != worker_id() and not worker_dead(r.worker_id, r.heartbeat_at, utcnow()):
        return None                     # another live worker submits or follows its job
    adopt = seen_job if active and seen_job != SUBMITTING else None
    if not adopt:
        r.attempts += 1
        r.slurm_job = SUBMITTING
    hp = dict(r.hparams or {})
    r.worker_id, r.heartbeat_at = worker_id(), utcnow()
    r.output_dir = r.output_dir or str(runs_dir() / f"run_{r.id:05d}")
    return {"spec": r.spec, "dataset": r.dataset, "hparams": hp, "out": r.output_dir,
            "offset": r.metrics_offset, "gpus": r.gpus, "threads": r.threads or train_threads(hp),
            "attempt": r.attempts, "adopt": adopt, "devices": None}


def _claim(run_id: int) -> dict[str, Any] | None:
    """The job to submit or adopt (a queued run whose job still runs, its follower gone)."""
    with read_session() as s:
        r = s.get(Run, run_id)
        seen = r.slurm_job if r is not None else None
    active = seen == SUBMITTING or (bool(seen) and not job_state(seen).ended)  # unknown: active
    return write(lambda s: _claim_in(s, run_id, seen, active))


def _set(run_id: int, attempt: int, **fields: Any) -> bool:
    """Update this attempt's row; False when it is not ours any more (cancelled, reaped)."""
    def upd(s):
        r = s.get(Run, run_id)
        if not _mine(r, attempt):
            return False
        for k, v in fields.items():
            setattr(r, k, v)
        return True
    return write(upd)


def supervise(run_id: int) -> str | None:
    """Submit run ``run_id`` as a Slurm job (or adopt its job from a dead worker) and follow it
    to the end; returns the final status (None: nothing to do)."""
    with _following_lock:
        if run_id in _following:
            return None                 # a duplicate queue message: this process follows it
        _following.add(run_id)
    supervising(run_id, True)       # this worker's reaper leaves a run it follows alone
    try:
        job = _claim(run_id)
        return None if job is None else _submit_and_follow(run_id, job)
    finally:
        supervising(run_id, False)
        with _following_lock:
            _following.discard(run_id)


def _submit_and_follow(run_id: int, job: dict[str, Any]) -> str:
    attempt = job["attempt"]
    job_id = job["adopt"]
    if not job_id:
        try:
            problem = _validate(job["spec"], job["dataset"], job["hparams"])
            if problem:
                raise ValueError(problem)
            job["nodes"], job["gpus_per_node"], job["threads"] = layout(job["gpus"], job["threads"])
            job["nproc"] = max(1, job["gpus_per_node"])
            job_id = submit(job, run_id)
        except (ValueError, RuntimeError, OSError, subprocess.SubprocessError) as e:
            _set(run_id, attempt, status=FAILED, error=str(e), finished_at=utcnow())
            return FAILED
        if not _set(run_id, attempt, slurm_job=job_id, nodes=None, devices=None,
                    wait_reason=f"Slurm job {job_id} submitted"):
            scancel(job_id)
            return LOST
    return follow(run_id, attempt, job_id, Path(job["out"]), job["offset"])


def follow(run_id: int, attempt: int, job_id: str, run_dir: Path, offset: int) -> str:
    """Mirror Slurm job ``job_id`` into run ``run_id`` until it ends."""
    log = run_dir / "train.log"
    log_start = log.stat().st_size if log.exists() else 0
    cancelling = False
    while True:
        info = job_state(job_id)
        why = None
        if info.state in PENDING:       # (again, after a requeue): nothing new to read yet
            if not _set(run_id, attempt, status=QUEUED, heartbeat_at=utcnow(),
                        wait_reason=f"Slurm job {job_id} pending: {_reason(info)}"):
                why = _row_why(run_id)
        elif info.state:                # running, completing or ended: ingest what is written
            if info.state == "RUNNING" and not _running(run_id, attempt, info):
                why = _row_why(run_id)
            events, new_offset = read_events(run_dir / "metrics.jsonl", offset)
            got = _sync(run_id, attempt, events, new_offset, run_dir, None)[0] if why is None else why
            if got != LOST or not info.ended:
                offset, why = new_offset, got
        if why and not cancelling and info.state and not info.ended:
            cancelling = scancel(job_id)
            if why == LOST and cancelling:
                return LOST
        if info.ended:
            return _end(run_id, attempt, info, run_dir, log, log_start, cancelling)
        time.sleep(poll_s())


def _reason(info: Job) -> str:
    """Slurm's pending reason ("Resources", "Priority", "BeginTime" after a requeue, ...)."""
    if info.reason in ("", "None"):
        return "not scheduled yet" if info.state == "PENDING" else info.state
    return info.reason


def _running(run_id: int, attempt: int, info: Job) -> bool:
    """Mark the row running on the job's nodes (again after a requeue); False if not ours."""
    def upd(s):
        r = s.get(Run, run_id)
        if not _mine(r, attempt):
            return False
        if r.status != RUNNING:
            r.status, r.started_at, r.wait_reason = RUNNING, utcnow(), None
        r.nodes = info.nodes
        return True
    return write(upd)


def _row_why(run_id: int) -> str:
    """Why a row we could not update is not ours: cancelled by the user, or taken."""
    with read_session() as s:
        r = s.get(Run, run_id)
        return CANCELLED if r is not None and r.cancel_requested else LOST


def _end(run_id: int, attempt: int, info: Job, run_dir: Path, log: Path, log_start: int,
         cancelled: bool) -> str:
    tail = _tail(log, log_start)
    if info.state in ENDED_OK and info.exit_code == 0:
        status, err = SUCCEEDED, None
    elif cancelled or (info.state == "CANCELLED" and _row_why(run_id) == CANCELLED):
        status, err = CANCELLED, None
    else:
        status = FAILED
        last = error_line(tail)
        err = (f"Slurm job {info.job_id} {info.state}"
               + (f" ({info.reason})" if info.reason and info.reason != "None" else "")
               + f", exit code {info.exit_code}:{info.signal}" + (f": {last}" if last else ""))
    fields = dict(status=status, error=err, finished_at=utcnow(), log_tail=tail, wait_reason=None)
    if _set(run_id, attempt, **fields):
        return status
    return CANCELLED if status == CANCELLED else LOST

