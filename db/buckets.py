"""Step-series summaries kept at ingestion, so drawing a long run reads buckets, not points.

Every ``BUCKET_STEPS`` steps of a step series have one ``metric_buckets`` row with the ids of
the bucket's first min (smallest value, then step, then id), first max and last point (largest
step, then id). Merging rows gives the same points as :func:`db.downsample.reduce` for any
power-of-two width of at least ``BUCKET_STEPS`` (for a series with one point per step).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from .models import BUCKET_STEPS, MetricBucket

_LO = lambda p: (p[2], p[1], p[0])       # noqa: E731  (value, step, id), smallest first
_HI = lambda p: (-p[2], p[1], p[0])      # noqa: E731
_LAST = lambda p: (p[1], p[0])           # noqa: E731  largest last


def update_buckets(s: Session, insert, run_id: int, inserted: list) -> None:
    """Fold newly inserted points ``(id, name, split, event, step, value)`` into their
    buckets; ``insert`` is the dialect's insert (ON CONFLICT DO UPDATE)."""
    groups: dict[tuple, list] = {}
    for i, name, split, event, step, value in inserted:
        if event == "step":
            groups.setdefault((name, split, step // BUCKET_STEPS), []).append((i, step, value))
    if not groups:
        return
    rows = []
    for (name, split, b), pts in groups.items():
        lo, hi, last = min(pts, key=_LO), min(pts, key=_HI), max(pts, key=_LAST)
        rows.append({"run_id": run_id, "name": name, "split": split, "bucket": b,
                     "lo_id": lo[0], "lo_step": lo[1], "lo_value": lo[2], "hi_id": hi[0],
                     "hi_step": hi[1], "hi_value": hi[2], "last_id": last[0],
                     "last_step": last[1]})
    stmt = insert(MetricBucket)
    new, old = stmt.excluded, MetricBucket.__table__.c

    def better(kind: str, sign: int):
        nv, ov = getattr(new, f"{kind}_value"), getattr(old, f"{kind}_value")
        ns, os_ = getattr(new, f"{kind}_step"), getattr(old, f"{kind}_step")
        first = or_(ns < os_, and_(ns == os_, getattr(new, f"{kind}_id") < getattr(old, f"{kind}_id")))
        return or_(nv < ov if sign > 0 else nv > ov, and_(nv == ov, first))

    upd: dict[str, Any] = {}
    for kind, cond in (("lo", better("lo", 1)), ("hi", better("hi", -1)),
                       ("last", or_(new.last_step > old.last_step, and_(
                           new.last_step == old.last_step, new.last_id > old.last_id)))):
        for col in ("id", "step", "value"):
            if kind == "last" and col == "value":
                continue
            c = f"{kind}_{col}"
            upd[c] = case((cond, getattr(new, c)), else_=getattr(old, c))
    stmt = stmt.on_conflict_do_update(index_elements=["run_id", "name", "split", "bucket"],
                                      set_=upd)
    for i in range(0, len(rows), 500):
        s.execute(stmt, rows[i:i + 500])


def bucket_ids(s: Connection, run_id: int, name: str, split: str, w: int, first_step: int,
               last_step: int) -> set[int] | None:
    """Ids of each ``w``-step bucket's first min, first max and last point from the stored
    buckets; None when they do not cover the series (stored before they existed)."""
    if w < BUCKET_STEPS or w % BUCKET_STEPS:
        return None
    t = MetricBucket
    rows = s.execute(select(t.bucket, t.lo_id, t.lo_step, t.lo_value, t.hi_id, t.hi_step,
                            t.hi_value, t.last_id, t.last_step)
                     .where(t.run_id == run_id, t.name == name, t.split == split)
                     .order_by(t.bucket)).all()
    if not rows or rows[0][0] != first_step // BUCKET_STEPS or \
            rows[-1][0] != last_step // BUCKET_STEPS:
        return None
    groups: dict[int, list] = {}
    for r in rows:
        groups.setdefault(r[0] * BUCKET_STEPS // w, []).append(r)
    ids: set[int] = set()
    for g in groups.values():
        ids.add(min(((r[1], r[2], r[3]) for r in g), key=_LO)[0])
        ids.add(min(((r[4], r[5], r[6]) for r in g), key=_HI)[0])
        ids.add(max(((r[7], r[8]) for r in g), key=_LAST)[0])
    return ids
