"""A run as a record the user keeps: rename, notes, tags, delete; its files and full metrics.

Every stored point stays downloadable (the pages only draw a downsampled version).
"""
from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db import ACTIVE, Metric, Run, read_session, runs_dir, write
from db.query import FIELDS

MAX_TAGS, MAX_TAG = 20, 40


def clean_tags(tags: list[str] | str | None) -> list[str]:
    """Tags from a list or a comma-separated string: trimmed, unique, in order."""
    items = tags.split(",") if isinstance(tags, str) else list(tags or [])
    out: list[str] = []
    for t in items:
        t = str(t).strip()
        if not t:
            continue
        if len(t) > MAX_TAG:
            raise ValueError(f"a tag has at most {MAX_TAG} characters: {t[:MAX_TAG]}…")
        if t not in out:
            out.append(t)
    if len(out) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return out


def update_run(run_id: int, *, name: str | None = None, notes: str | None = None,
               tags: list[str] | str | None = None) -> bool:
    """Set a run's name, notes and/or tags (``None`` leaves a field); False if no such run."""
    new_tags = None if tags is None else clean_tags(tags)
    if name is not None and len(name.strip()) > 200:
        raise ValueError("a run name has at most 200 characters")

    def upd(s):
        r = s.get(Run, run_id)
        if r is None:
            return False
        if name is not None:
            r.name = name.strip() or None
        if notes is not None:
            r.notes = notes
        if new_tags is not None:
            r.tags = new_tags
        return True
    return write(upd)


def delete_run(run_id: int, files: bool = False) -> bool:
    """Delete a finished run with its metrics and checkpoint rows; ``files`` also removes its
    output folder when that lies inside the runs directory. False if no such run.

    Raises ``ValueError`` for a queued or running run (cancel it first).
    """
    def delete(s):
        r = s.get(Run, run_id)
        if r is None:
            return None
        if r.status in ACTIVE:
            raise ValueError(f"run #{run_id} is {r.status}: cancel it before deleting it")
        out = r.output_dir
        s.delete(r)
        return out or ""
    out = write(delete)
    if out is None:
        return False
    if files and out:
        d, root = Path(out).resolve(), runs_dir().resolve()
        if d != root and d.is_relative_to(root) and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
    return True


def run_file(r: dict[str, Any], name: str) -> Path | None:
    """``metrics.jsonl``, ``train.log`` or ``spec.json`` of a run when this machine can read it."""
    if name not in ("metrics.jsonl", "train.log", "spec.json") or not r.get("output_dir"):
        return None
    p = Path(r["output_dir"]) / name
    return p if p.is_file() else None


def metrics_csv(run_id: int, batch: int = 50_000) -> Iterator[str]:
    """Every stored point of a run as CSV text chunks (header first), in id order."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(FIELDS)
    last = 0
    while True:
        with read_session() as s:
            rows = s.execute(select(*[getattr(Metric, f) for f in FIELDS])
                             .where(Metric.run_id == run_id, Metric.id > last)
                             .order_by(Metric.id).limit(batch)).all()
        w.writerows(rows)
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
        if len(rows) < batch:
            return
        last = rows[-1][0]
