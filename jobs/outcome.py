"""A run's durable outcome and the ingestion of its trainer's events, for whoever ends a run.

The trainer writes ``RUN_DIR/outcome.json`` (``{"exit_status", "time", "pid", "attempt"}``,
atomically) as it exits; its supervisor writes it when the trainer could not (killed by a
signal). ``attempt`` is ``CSN_RUN_ATTEMPT`` (``RUN_ID:ATTEMPT``, set by the supervisor), so an
earlier attempt's file never speaks for a later one. The file is what the trainer really did,
whatever happened to its supervisor: the reaper, the
reconciler, ``retry_run`` and a supervisor that lost its run read it first, so a trainer that
exited 0 makes its run ``succeeded`` with every point of ``metrics.jsonl`` ingested.
"""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db import CANCELLED, CRASHED, FAILED, RUNNING, SUCCEEDED, Checkpoint, Run, add_metrics, as_utc, utcnow

from .tail import is_video_top1, metric_rows, read_events, whole
from .trainer_exit import exit_reason, log_tail

OUTCOME = "outcome.json"
ATTEMPT_ENV = "CSN_RUN_ATTEMPT"


def write_outcome(run_dir: Path, exit_status: int, **extra: Any) -> None:
    """Write ``RUN_DIR/outcome.json`` atomically (temp file + ``os.replace``)."""
    run_dir = Path(run_dir)
    fd, tmp = tempfile.mkstemp(prefix=".outcome.", dir=run_dir)
    with os.fdopen(fd, "w") as f:
        json.dump({"exit_status": int(exit_status), "time": utcnow().timestamp(), **extra}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / OUTCOME)


def attempt_tag(run_id: int, attempt: int) -> str:
    return f"{run_id}:{attempt}"


def read_outcome(run_dir: str | Path | None, tag: str) -> dict[str, Any] | None:
    """The outcome written by attempt ``tag`` (see :func:`attempt_tag`), or None."""
    if not run_dir:
        return None
    try:
        d = json.loads((Path(run_dir) / OUTCOME).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(d, dict) and d.get("attempt") == tag and type(d.get("exit_status")) is int
    return d if ok else None


def clear_outcome(run_dir: Path) -> None:
    """Forget an earlier attempt's outcome (before a new trainer starts)."""
    (Path(run_dir) / OUTCOME).unlink(missing_ok=True)


def event_time(ev: dict[str, Any]) -> datetime | None:
    t = ev.get("time")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or t != t:
        return None
    try:
        return datetime.fromtimestamp(t, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def ingest(s, r: Run, events: list[dict[str, Any]], run_dir: Path) -> None:
    """Store events' metric points, progress, checkpoints, best val video@1 and the trainer's
    progress time on row ``r`` (points de-duplicated on their key)."""
    rows = metric_rows(events)
    add_metrics(s, r.id, rows)
    for ev in events:
        for k in ("epoch", "step", "total_steps", "total_epochs"):
            if isinstance(ev.get(k), int):
                setattr(r, k, ev[k])
        t = event_time(ev)
        if t is not None and (r.progress_at is None or t > as_utc(r.progress_at)):
            r.progress_at = t
        if ev.get("event") == "checkpoint":
            epoch, path = whole(ev.get("epoch")), ev.get("path")
            if not isinstance(path, str) or not path:
                path = str(run_dir / "checkpoints" / f"epoch_{epoch:04d}.pt")
            path = str(Path(run_dir, path)) if not os.path.isabs(path) else path
            if not s.query(Checkpoint).filter_by(run_id=r.id, path=path).first():
                metrics = ev.get("metrics")
                s.add(Checkpoint(run_id=r.id, epoch=epoch, path=path,
                                 metrics=metrics if isinstance(metrics, dict) else {}))
    for row in rows:
        if row["split"] == "val" and is_video_top1(row["name"]):
            if r.best_val_video_top1 is None or row["value"] > r.best_val_video_top1:
                r.best_val_video_top1 = row["value"]


def settle_in(s, r: Run | None, attempt: int | None = None) -> str | None:
    """End row ``r`` as its trainer's outcome file says, ingesting the rest of its metrics;
    returns the new status, or None (no outcome of this attempt, or nothing to change).

    A ``running`` row takes any exit status (0 succeeded, a cancel asked for: cancelled, else
    failed with the trainer's reason). A ``crashed`` row (reaped) changes only for exit 0: a
    trainer that was stopped after the reaping must stay resumable."""
    if r is None or r.status not in (RUNNING, CRASHED) or (attempt is not None and r.attempts != attempt):
        return None
    got = read_outcome(r.output_dir, attempt_tag(r.id, r.attempts))
    if got is None or (r.status == CRASHED and got["exit_status"] != 0):
        return None
    run_dir, rc = Path(r.output_dir), got["exit_status"]
    events, offset = read_events(run_dir / "metrics.jsonl", r.metrics_offset or 0)
    ingest(s, r, events, run_dir)
    tail = log_tail(run_dir / "train.log")
    status = SUCCEEDED if rc == 0 else CANCELLED if r.cancel_requested else FAILED
    r.status, r.metrics_offset, r.finished_at, r.pid, r.log_tail = status, offset, utcnow(), None, tail
    r.error = exit_reason(rc, tail) if status == FAILED else None
    return status


def settle_crashed(limit: int = 100) -> list[int]:
    """Crashed runs (the newest ``limit``) whose trainer has since exited 0: now ``succeeded``."""
    from db import read_session, write
    with read_session() as s:
        rows = s.execute(select(Run.id, Run.output_dir, Run.attempts).where(
            Run.status == CRASHED, Run.output_dir.is_not(None)).order_by(Run.id.desc()).limit(limit)).all()
    done = []
    for rid, out, attempt in rows:
        got = read_outcome(out, attempt_tag(rid, attempt))
        if got and got["exit_status"] == 0 and write(lambda s, rid=rid: settle_in(s, s.get(Run, rid))):
            done.append(rid)
    return done
