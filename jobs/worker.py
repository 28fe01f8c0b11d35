"""Huey tasks and hooks (see :mod:`jobs` for why this module is not called ``tasks``)."""
from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any

from huey.exceptions import RetryTask
from sqlalchemy import select

from db import FAILED, QUEUED, Run, as_utc, read_session, utcnow, write

from . import slurm
from .liveness import reconcile_s, stale_s, start_heartbeat
from .queue import huey, sync_storage
from .supervise import WAIT, supervise


def wait_s() -> float:
    """Seconds before a run that does not fit yet is tried again."""
    return float(os.environ.get("CSN_WAIT_S", "1"))


@huey.task()
def run_training(run_id: int) -> str | None:
    """Train run ``run_id`` in a supervised subprocess (or a Slurm job: ``CSN_EXECUTOR``);
    returns its final status. A run whose
    resource request does not fit yet goes back to the queue's schedule (same task id)."""
    start_heartbeat(on_tick=reconcile_queued)
    status = (slurm.supervise if slurm.executor() == "slurm" else supervise)(run_id)
    if status == WAIT:
        raise RetryTask(delay=wait_s())
    return status


def enqueue_task(run_id: int) -> None:
    """Put run ``run_id``'s task on the queue and record its id (a failure fails the run)."""
    sync_storage()
    try:
        task_id = run_training(run_id).id
    except Exception as e:
        def fail(s):        # only a run still waiting: one claimed meanwhile is its worker's
            r = s.get(Run, run_id)
            if r is not None and r.status == QUEUED:
                r.status, r.error, r.finished_at = FAILED, f"could not enqueue: {e}", utcnow()
        write(fail)
        raise
    write(lambda s: set_fields(s, run_id, task_id=task_id, queued_at=utcnow()))


def set_fields(s, run_id: int, **kw: Any) -> None:
    """Set columns of run ``run_id`` in session ``s``."""
    r = s.get(Run, run_id)
    for k, v in kw.items():
        setattr(r, k, v)


def queued_task_ids() -> set[str]:
    """Ids of the queue's pending and scheduled tasks."""
    h = sync_storage()
    return {t.id for t in h.pending()} | {t.id for t in h.scheduled()}


def reconcile_queued(grace_s: float | None = None) -> list[int]:
    """Re-enqueue queued runs (queued longer than ``grace_s``, default ``reconcile_s()``)
    whose message is neither pending nor scheduled in the queue; a run that cannot be
    re-enqueued is failed with the reason. Returns the ids of the runs it touched."""
    grace = timedelta(seconds=reconcile_s() if grace_s is None else grace_s)
    now = utcnow()
    with read_session() as s:
        rows = s.execute(select(Run.id, Run.task_id, Run.queued_at, Run.created_at, Run.heartbeat_at).where(
            Run.status == QUEUED)).all()
    # a fresh heartbeat on a queued run: a task is following it (a pending Slurm job), not lost
    fresh = timedelta(seconds=stale_s())
    old = [(rid, tid) for rid, tid, qa, ca, hb in rows
           if now - as_utc(qa or ca) >= grace and (hb is None or now - as_utc(hb) > fresh)]
    if not old:
        return []
    known = queued_task_ids()
    lost = [rid for rid, tid in old if not tid or tid not in known]
    for rid in lost:
        try:
            enqueue_task(rid)   # a failure marks the run failed ("could not enqueue: ...")
        except Exception as e:  # noqa: BLE001 - reported on the run row
            print(f"reconcile: run {rid}: {e!r}", flush=True)
    return lost


@huey.on_startup()
def _startup() -> None:
    """Once per process: check the database, reap dead workers' runs and orphaned trainers,
    start beating. A worker that cannot use the database says why and exits (status 3)."""
    try:
        slurm.executor()             # a bad CSN_EXECUTOR stops the worker here
        start_heartbeat(on_tick=reconcile_queued)
    except Exception as e:  # noqa: BLE001 - a worker without a usable store must not idle
        print(f"error: worker cannot start: {e}", file=sys.stderr, flush=True)
        os._exit(3)
