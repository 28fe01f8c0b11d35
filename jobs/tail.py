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


def metric_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metric points (one row per number) of step/epoch/end events."""
    rows = []
    for ev in events:
        name = str(ev.get("event", ""))
        if name in SKIP_METRICS:
            continue
        for k, v in (ev.get("metrics") or {}).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                continue
            rows.append({"event": name, "split": ev.get("split") or "", "epoch": ev.get("epoch") or 0,
                         "step": ev.get("step") or 0, "name": k, "value": float(v),
                         "time": ev.get("time")})
    return rows


def is_video_top1(name: str) -> bool:
    """Whether a metric name is video-level top-1 accuracy (``video@1``, ``video_top1``...)."""
    n = name.lower().replace("-", "_")
    return "video" in n and any(t in n for t in ("@1", "top1", "acc1", "top_1"))
