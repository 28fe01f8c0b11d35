"""Incremental reading of ``RUN_DIR/metrics.jsonl`` from a remembered byte offset."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SKIP_METRICS = {"start", "checkpoint"}  # events whose numbers are not curve points


def read_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines after ``offset`` and the offset past the last one.

    A trailing partial line is left for the next call. If the file shrank below ``offset``
    (rewritten by a fresh start) reading restarts at 0; metric de-duplication makes that safe.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], offset
    if size < offset:
        offset = 0
    if size == offset:
        return [], offset
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read(size - offset)
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in data[:end].splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            events.append(ev)
    return events, offset + end + 1


def whole(v: Any) -> int:
    """An event's epoch / step as an int (0 when missing or not a whole number)."""
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def metric_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metric points (one row per number) of step/epoch/end events; a malformed event (metrics
    not a mapping, a non-string split) gives no rows instead of stopping the ingestion."""
    rows = []
    for ev in events:
        name, metrics, split = str(ev.get("event", "")), ev.get("metrics"), ev.get("split")
        if name in SKIP_METRICS or not isinstance(metrics, dict):
            continue
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                continue
            rows.append({"event": name, "split": split if isinstance(split, str) else "",
                         "epoch": whole(ev.get("epoch")), "step": whole(ev.get("step")),
                         "name": str(k), "value": float(v), "time": ev.get("time")})
    return rows


def is_video_top1(name: str) -> bool:
    """Whether a metric name is video-level top-1 accuracy (``video@1``, ``video_top1``...)."""
    n = name.lower().replace("-", "_")
    return "video" in n and any(t in n for t in ("@1", "top1", "acc1", "top_1"))
