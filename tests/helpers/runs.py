"""Seeded runs for the store and page tests: a Run row (with checkpoints and metric rows) as a
worker would have left it, without running one."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Value = float | Callable[[int], float]


def step_points(steps: Iterable[int], series: dict[str, Value], *,
                epoch: int | Callable[[int], int] = 1, t0: float | None = None,
                every_s: float = 1.0) -> list[dict]:
    """Train step metric points: for each step, one per ``series`` name (its value, or a
    function of the step). ``epoch`` is a number or a function of the step; with ``t0`` each
    point has a time, ``every_s`` seconds a step."""
    out = []
    for s in steps:
        for name, value in series.items():
            point = {"event": "step", "split": "train", "step": s, "name": name,
                     "epoch": epoch(s) if callable(epoch) else epoch,
                     "value": value(s) if callable(value) else value}
            if t0 is not None:
                point["time"] = t0 + s * every_s
            out.append(point)
    return out


def val_point(epoch: int, step: int, value: float, name: str = "video_top1",
              time: float | None = None) -> dict:
    """One per-epoch validation metric point."""
    point = {"event": "epoch", "split": "val", "epoch": epoch, "step": step, "name": name,
             "value": value}
    if time is not None:
        point["time"] = time
    return point


def seed_run(metrics: Iterable[dict] = (), checkpoints: Iterable[tuple[int, str]] = (),
             **fields: Any) -> int:
    """Add a Run row with ``fields`` (spec, dataset and hparams default to a tiny net on no
    data), its ``(epoch, path)`` checkpoints and its metric rows to the store the environment
    names; the run's id."""
    from db import Checkpoint, Run, write

    from tests.helpers.jobs import tiny_spec

    row = {"spec": tiny_spec(), "dataset": "/nowhere", "hparams": {}, **fields}

    def add(s) -> int:
        run = Run(**row)
        s.add(run)
        s.flush()
        for epoch, path in checkpoints:
            s.add(Checkpoint(run_id=run.id, epoch=epoch, path=str(path)))
        return run.id
    rid = write(add)
    add_points(rid, metrics)
    return rid


def add_points(rid: int, metrics: Iterable[dict]) -> None:
    """Store more metric points of run ``rid``, as a worker's ingestion does."""
    import db

    points = list(metrics)
    if points:
        db.write(lambda s: db.add_metrics(s, rid, points))
