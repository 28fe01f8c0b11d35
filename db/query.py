"""Metric reads: every stored point, or a bounded display version of each series.

Polling reads ``run_id = ? AND id > ?`` on ``ix_metrics_run_id``, so a refresh costs what is
new. A first read seeks each series on ``ix_metrics_series`` (``run_id, name, split, event,
step, value``) and merges its stored buckets (``metric_buckets``, kept at ingestion), so it
costs what is drawn; a store without buckets falls back to one covering scan per series. A
run's points are written by one supervisor in order, so ids grow with time within a run and
``since_id`` skips nothing.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select, tuple_
from sqlalchemy.orm import Session

from .buckets import bucket_ids
from .downsample import bucket_width, reduce
from .models import Metric

FIELDS = ("id", "event", "split", "epoch", "step", "name", "value", "time")
_COLS = [getattr(Metric, f) for f in FIELDS]
_STEP, _VALUE = FIELDS.index("step"), FIELDS.index("value")


def metric_points(s: Session, run_id: int, name: str | None = None, split: str | None = None,
                  event: str | None = None, since_id: int = 0,
                  max_points: int | None = None) -> list[dict[str, Any]]:
    """Points ``{id, event, split, epoch, step, name, value, time}`` in training order.

    ``max_points``: each step series (one name, split and event "step") is reduced to
    per-bucket min, max and last points (:mod:`db.downsample`; a short one stays whole), plus
    its newest point; epoch-level series are always whole. With ``since_id`` the reduction applies to
    the newer points only; a page merges them into what it shows (:func:`db.downsample.merge`).
    """
    where = [Metric.run_id == run_id]
    for col, v in ((Metric.name, name), (Metric.split, split), (Metric.event, event)):
        if v is not None:
            where.append(col == v)
    s = s.connection()   # Core rows: no ORM loading per point
    if max_points is None:
        rows = s.execute(select(*_COLS).where(*where, Metric.id > since_id)
                         .order_by(Metric.epoch, Metric.step, Metric.id)).all()
    elif since_id:
        rows = _reduce_new(s, where, since_id, max_points)
    else:
        rows = _reduce_all(s, run_id, where, max_points)
    rows.sort(key=lambda p: (p[3], p[_STEP], p[0]))
    return [dict(zip(FIELDS, r)) for r in rows]


def _reduce_new(s: Connection, where: list, since_id: int, max_points: int) -> list:
    """The points after ``since_id`` (read by id), each step series reduced, the newest
    point always in (a poller goes on from the largest id it saw)."""
    new = s.execute(select(*_COLS).where(*where, Metric.id > since_id).order_by(Metric.id)).all()
    series: dict[tuple, list] = {}
    for r in new:
        series.setdefault((r[5], r[2], r[1]), []).append(r)
    rows: list = []
    for (_, _, ev), pts in series.items():
        if ev != "step":
            rows += pts
            continue
        pts.sort(key=lambda p: p[_STEP])      # stable: insertion order within a step
        rows += reduce(pts, max_points, _STEP, _VALUE)
    return _with(rows, new[-1][0], new[-1:]) if new else rows


def _reduce_all(s: Connection, run_id: int, where: list, max_points: int) -> list:
    """Every series of a run: epoch series whole; a step series reduced from its stored
    buckets (:mod:`db.buckets`; else one scan of (step, value, id)), then only its kept points
    read in full. Finding the series, their first and last steps and the run's newest point
    are index seeks, so a first read costs what is drawn, not the run's length."""
    rows: list = []
    for name, split, event in _series(s, where):
        one = [*where, Metric.name == name, Metric.split == split, Metric.event == event]
        last_step = s.execute(select(func.max(Metric.step)).where(*one)).scalar()
        if event != "step" or last_step < max_points:
            pts = s.execute(select(*_COLS).where(*one).order_by(
                Metric.step, Metric.value, Metric.id)).all()
            rows += pts if event != "step" else reduce(pts, max_points, _STEP, _VALUE)
            continue
        first_step = s.execute(select(func.min(Metric.step)).where(*one)).scalar()
        ids = bucket_ids(s, run_id, name, split,
                         bucket_width(last_step, max_points), first_step, last_step)
        if ids is None:   # no stored buckets (an older store): one scan of the series
            scan = _raw(s, select(Metric.step, Metric.value, Metric.id).where(*one)
                        .order_by(Metric.step, Metric.value, Metric.id))
            ids = {p[2] for p in reduce(scan, max_points, 0, 1)}
        rows += s.execute(select(*_COLS).where(Metric.id.in_(sorted(ids)))).all()
    newest = s.execute(select(*_COLS).where(*where).order_by(Metric.id.desc()).limit(1)).first()
    return _with(rows, newest[0], [newest]) if newest is not None else rows


def _series(s: Connection, where: list) -> list[tuple[str, str, str]]:
    """The distinct (name, split, event) of the selection: one index seek per series."""
    key = (Metric.name, Metric.split, Metric.event)
    out: list[tuple[str, str, str]] = []
    while True:
        q = select(*key).where(*where).order_by(*key).limit(1)
        if out:
            q = q.where(tuple_(*key) > tuple_(*out[-1]))
        row = s.execute(q).first()
        if row is None:
            return out
        out.append(tuple(row))


def _with(kept: list, newest: int, pts: list) -> list:
    """``kept`` and the point with id ``newest`` (a poller goes on from the largest id)."""
    return kept if any(p[0] == newest for p in kept) else kept + [p for p in pts if p[0] == newest]


def _raw(s: Connection, stmt) -> list[tuple]:
    """``stmt``'s rows as plain tuples from the DBAPI cursor (SQLite, PostgreSQL, ...)."""
    c = stmt.compile(dialect=s.dialect)
    params = c.params if not c.positional else [c.params[k] for k in c.positiontup]
    cur = s.connection.driver_connection.cursor()
    try:
        cur.execute(str(c), params)
        return cur.fetchall()
    finally:
        cur.close()
