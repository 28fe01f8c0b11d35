"""Huey tasks and hooks (see :mod:`jobs` for why this module is not called ``tasks``)."""
from __future__ import annotations

from .liveness import start_heartbeat
from .queue import huey
from .supervise import supervise


@huey.task()
def run_training(run_id: int) -> str | None:
    """Train run ``run_id`` in a supervised subprocess; returns its final status."""
    start_heartbeat()
    return supervise(run_id)


@huey.on_startup()
def _startup() -> None:
    start_heartbeat()  # once per process; beats and reaps runs of dead workers
