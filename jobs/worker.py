"""Huey tasks and hooks (see :mod:`jobs` for why this module is not called ``tasks``)."""
from __future__ import annotations

import os
import sys

from huey.exceptions import RetryTask

from .liveness import start_heartbeat
from . import slurm
from .queue import huey
from .supervise import WAIT, supervise


def wait_s() -> float:
    """Seconds before a run that does not fit yet is tried again."""
    return float(os.environ.get("CSN_WAIT_S", "1"))


@huey.task()
def run_training(run_id: int) -> str | None:
    """Train run ``run_id`` in a supervised subprocess (or a Slurm job: ``CSN_EXECUTOR``);
    returns its final status. A run whose
    resource request does not fit yet goes back to the queue's schedule (same task id)."""
    start_heartbeat()
    status = (slurm.supervise if slurm.executor() == "slurm" else supervise)(run_id)
    if status == WAIT:
        raise RetryTask(delay=wait_s())
    return status


@huey.on_startup()
def _startup() -> None:
    """Once per process: check the database, reap dead workers' runs and orphaned trainers,
    start beating. A worker that cannot use the database says why and exits (status 3)."""
    try:
        slurm.executor()             # a bad CSN_EXECUTOR stops the worker here
        start_heartbeat()
    except Exception as e:  # noqa: BLE001 - a worker without a usable store must not idle
        print(f"error: worker cannot start: {e}", file=sys.stderr, flush=True)
        os._exit(3)
