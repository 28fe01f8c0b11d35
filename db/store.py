"""Idempotent metric ingestion: a point already stored (same unique key) is skipped."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.orm import Session

from .buckets import update_buckets
from .models import Metric

KEY = ("run_id", "split", "epoch", "step", "name", "event")


def add_metrics(s: Session, run_id: int, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert metric points for ``run_id``, skipping any whose unique key is already stored.

    Each row: ``event, split, epoch, step, name, value[, time]``. Uses the dialect's
    ``ON CONFLICT DO NOTHING`` on SQLite/PostgreSQL, select-then-insert elsewhere; there the
    step-series buckets (:mod:`db.buckets`) are updated with the points really inserted.
    """
    uniq: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        d = {"run_id": run_id, "event": str(r["event"]), "split": str(r.get("split") or ""),
             "epoch": int(r.get("epoch") or 0), "step": int(r.get("step") or 0),
             "name": str(r["name"]), "value": float(r["value"]), "time": r.get("time")}
        uniq.setdefault(tuple(d[k] for k in KEY), d)
    if not uniq:
        return
    values = list(uniq.values())
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        mod = __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["insert"])
        stmt = mod.insert(Metric).on_conflict_do_nothing().returning(
            Metric.id, Metric.name, Metric.split, Metric.event, Metric.step, Metric.value)
        inserted: list = []
        for i in range(0, len(values), 500):
            inserted += s.execute(stmt, values[i:i + 500]).all()
        update_buckets(s, mod.insert, run_id, inserted)
        return
    cols = [getattr(Metric, k) for k in KEY]
    existing = {tuple(r) for r in s.execute(select(*cols).where(
        Metric.run_id == run_id, tuple_(*cols).in_(list(uniq))))}
    new = [v for k, v in uniq.items() if k not in existing]
    if new:
        s.execute(insert(Metric), new)
