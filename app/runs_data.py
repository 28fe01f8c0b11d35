"""Plain-data shaping of runs and metrics for the Runs, Run detail and Compare pages."""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from backend.csn import ArchSpec, SpecError, count
from backend.csn.explore import stage_block_label

STATUS_ICON = {"queued": "◷", "running": "▶", "succeeded": "✓", "failed": "✗",
               "cancelled": "■", "crashed": "✗"}


@lru_cache(maxsize=512)
def _cost(spec_json: str, frames: int | None, size: int | None) -> tuple[float | None, float | None, str]:
    """(G multiply-adds, G interactions, block label) at the training clip when it is countable."""
    try:
        spec = ArchSpec.from_json(spec_json)
        block = stage_block_label(spec)
    except (SpecError, TypeError, ValueError):
        return None, None, "invalid"
    for s in ((replace(spec, frames=frames or spec.frames, height=size or spec.height,
                       width=size or spec.width)), spec):
        try:
            t = count(s).totals
            return t.flops / 1e9, t.interactions / 1e9, block
        except (SpecError, TypeError, ValueError):
            continue
    return None, None, block


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def pct(v: float | None) -> float | None:
    """Accuracy as a percentage (the trainer reports fractions)."""
    if v is None:
        return None
    return v * 100 if v <= 1.0 else v


@lru_cache(maxsize=1)
def _trainer_defaults() -> dict[str, Any]:
    """TrainConfig's defaults: what a run used for each hyper-parameter it did not set."""
    from backend.training.config import field_default, train_fields
    return {k: field_default(f) for k, f in train_fields().items() if field_default(f) is not None}


def run_row(r: dict[str, Any]) -> dict[str, Any]:
    """One table row: status, progress, architecture, key hparams, best val video@1, costs."""
    hp = {**_trainer_defaults(), **{k: v for k, v in (r.get("hparams") or {}).items() if v is not None}}
    flops, inter, block = _cost(json.dumps(r.get("spec") or {}, sort_keys=True),
                                _int(hp.get("frames")), _int(hp.get("size")))
    return {
        "id": r["id"], "name": r.get("name") or f"run {r['id']}",
        "status": r["status"],
        "progress": float(r.get("progress") or 0.0),
        "architecture": (r.get("spec") or {}).get("name", "?"), "block": block,
        "epochs": hp.get("epochs"), "batch": hp.get("batch_size"), "lr": hp.get("lr"),
        "frames×size": f"{hp.get('frames', '?')}×{hp.get('size', '?')}",
        "best val video@1 (%)": pct(r.get("best_val_video_top1")),
        "MAdds (G)": flops, "interactions (G)": inter,
        "devices": devices_label(r),
        "liveness": stall_note(r) or "",
        "tags": list(r.get("tags") or []),
        "created": r.get("created_at"),
    }


def stall_note(r: dict[str, Any]) -> str | None:
    """``no progress for N min`` for a running run whose trainer has gone quiet, else None."""
    quiet = r.get("no_progress_s")
    if quiet is None:
        return None
    from jobs.liveness import no_progress_text   # jobs/ is optional until a runs page needs it
    return no_progress_text(quiet)


def devices_label(r: dict[str, Any]) -> str:
    """What the run ran on (``GPU 0,1`` / ``CPU`` / ``Slurm job 12 on n[1-2]``), or why a queued
    run is still waiting (Slurm's pending reason for a Slurm job)."""
    if r.get("status") == "queued":
        return r.get("wait_reason") or ""
    if (r.get("slurm_job") or "").isdigit():
        return f"Slurm job {r['slurm_job']}" + (f" on {r['nodes']}" if r.get("nodes") else "")
    d = r.get("devices")
    return "" if d is None else f"GPU {d}" if d else "CPU"


MAX_POINTS = 1500    # per step series on screen; every point stays in the store and downloads
KEEP_RUNS = 16       # runs whose metrics a session keeps in memory


class RunMetrics:
    """One run's metrics as the pages draw them, kept per browser session.

    The first :meth:`refresh` reads each step series downsampled to ``max_points`` (epoch
    series whole); later ones read only points stored since (``since_id``) and merge them,
    so a refresh costs what is new plus what is on screen, not the run's length.
    """

    def __init__(self, run_id: int, stamp: str, max_points: int = MAX_POINTS):
        self.run_id, self.stamp, self.max_points = run_id, stamp, max_points
        self.last_id = 0
        self.series: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self.fetched = 0     # points the last refresh read

    def refresh(self, api) -> int:
        """Read and merge the points stored since the last call; returns how many."""
        from db.downsample import merge   # db/ is optional until a runs page needs it

        new = api.get_metrics(self.run_id, since_id=self.last_id, max_points=self.max_points)
        by_key: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for p in new:
            by_key.setdefault((p["name"], p["split"], p["event"]), []).append(p)
        for key, pts in by_key.items():
            old = self.series.get(key, [])
            if key[2] == "step":
                self.series[key] = merge(old, pts, self.max_points)
            else:
                self.series[key] = old + pts
        if new:
            self.last_id = max(self.last_id, max(p["id"] for p in new))
        self.fetched = len(new)
        return self.fetched

    @property
    def reduced(self) -> bool:
        """Whether a step series is drawn with fewer points than stored (buckets > 1 step)."""
        from db.downsample import bucket_width

        return any(k[2] == "step" and pts and bucket_width(pts[-1]["step"], self.max_points) > 1
                   for k, pts in self.series.items())

    def points(self) -> list[dict[str, Any]]:
        """Every shown point, series after series."""
        return [p for pts in self.series.values() for p in pts]

    def last(self, name: str, split: str = "train", event: str = "step") -> dict[str, Any] | None:
        """The newest point of one series, or None."""
        pts = self.series.get((name, split, event))
        return pts[-1] if pts else None


_shared: OrderedDict = OrderedDict()   # (run id, stamp, max_points) -> (last_id, series)
_shared_lock = threading.Lock()


def live_metrics(state: dict, api, runs: list[dict[str, Any]],
                 max_points: int = MAX_POINTS) -> dict[int, RunMetrics]:
    """``{run id: RunMetrics}`` for ``runs`` (run dicts), each refreshed with its new points.

    ``state`` is a dict kept across reruns (a session-state entry), shared by Run detail,
    Compare and the study pages; it holds the :data:`KEEP_RUNS` most recently shown runs.
    A session's first look at a run starts from what another session (or a reload) last
    drew of it in this process, so only the very first view of a run scans its series.
    A run id reused after a delete is recognised by its creation time and read afresh.
    """
    cache = state.setdefault("runs", OrderedDict())
    out: dict[int, RunMetrics] = {}
    for r in runs:
        stamp = str(r.get("created_at"))
        key = (r["id"], stamp, max_points)
        m = cache.get(r["id"])
        if m is None or m.stamp != stamp or m.max_points != max_points:
            m = RunMetrics(r["id"], stamp, max_points)
            with _shared_lock:
                if key in _shared:
                    m.last_id, series = _shared[key]
                    m.series = {k: list(v) for k, v in series.items()}
        m.refresh(api)
        with _shared_lock:
            _shared[key] = (m.last_id, {k: list(v) for k, v in m.series.items()})
            _shared.move_to_end(key)
            while len(_shared) > 4 * KEEP_RUNS:
                _shared.popitem(last=False)
        cache[r["id"]] = out[r["id"]] = m
        cache.move_to_end(r["id"])
    while len(cache) > max(KEEP_RUNS, len(out)):
        cache.popitem(last=False)
    return out


def forget_shared() -> None:
    """Drop what this process remembers of every run's drawn metrics (benchmarks, tests)."""
    with _shared_lock:
        _shared.clear()


X_AXES = {"step": "step", "epoch": "epoch", "wall time": "wall time (h)"}


def x_of(run: dict[str, Any], axis: str, t0: float | None):
    """A function point -> x for ``axis``: step, fractional epoch, or hours since ``t0``."""
    if axis == "epoch":
        per = (run.get("total_steps") or 0) / (run.get("total_epochs") or 0) \
            if run.get("total_epochs") else 0
        return (lambda p: p["step"] / per) if per else (lambda p: p["epoch"])
    if axis == "wall time":
        return lambda p: ((p["time"] or t0 or 0) - (t0 or 0)) / 3600
    return lambda p: p["step"]


def metric_series(points: list[dict[str, Any]],
                  x=None) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``{metric name: {series label: [(x, value)]}}``; a label is the split (or event);
    ``x`` maps a point to its x (default: its step)."""
    x = x or (lambda p: p["step"])
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for p in points:
        if p["event"] not in ("step", "epoch"):
            continue
        label = p["split"] or "train"
        if p["event"] == "epoch":
            label += " (epoch)"
        out.setdefault(p["name"], {}).setdefault(label, []).append((x(p), p["value"]))
    return out


def first_time(points: list[dict[str, Any]]) -> float | None:
    """The earliest wall time among ``points`` (unix seconds), or None."""
    ts = [p["time"] for p in points if p.get("time") is not None]
    return min(ts) if ts else None


CURVES = (("loss", "loss"), ("accuracy", "top1"), ("learning rate", "lr"))


def pick_curves(series: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
    """Loss, accuracy (every *top1) and learning-rate series, merged per chart."""
    charts: dict[str, dict[str, list]] = {}
    for title, key in CURVES:
        merged: dict[str, list] = {}
        for name, by_label in series.items():
            hit = name == key if key in ("loss", "lr") else key in name
            if hit:
                for label, pts in by_label.items():
                    merged[label if key in ("loss", "lr") else f"{name} {label}"] = pts
        if merged:
            charts[title] = merged
    return charts


def run_label(r: dict[str, Any], width: int = 22) -> str:
    """``#id name``, shortened to ``width`` characters for legends and column headers."""
    s = f"#{r['id']} {r.get('name') or (r.get('spec') or {}).get('name', '')}".strip()
    return s if len(s) <= width else s[:width - 1] + "…"


def _txt(v: Any) -> str:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)


def flat_config(r: dict[str, Any]) -> dict[str, str]:
    """A run's dataset, hyper-parameters and architecture as flat ``{field: text}``."""
    out = {"dataset": str(r.get("dataset"))}
    out.update({f"hparams.{k}": _txt(v) for k, v in sorted((r.get("hparams") or {}).items())})
    for k, v in (r.get("spec") or {}).items():
        if k == "stages" and isinstance(v, list):
            for i, st in enumerate(v):
                out.update({f"conv{i + 2}_x.{kk}": _txt(vv) for kk, vv in (st or {}).items()})
        else:
            out[f"arch.{k}"] = _txt(v)
    return out


def config_diff(runs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The fields whose values differ between ``runs``: rows ``{field, <run label>: value}``
    (``—`` where a run does not have the field)."""
    flat = [flat_config(r) for r in runs]
    rows = []
    for k in dict.fromkeys(k for f in flat for k in f):
        vals = [f.get(k, "—") for f in flat]
        if len(set(vals)) > 1:
            rows.append({"field": k, **{run_label(r): v for r, v in zip(runs, vals)}})
    return rows


def fmt_duration(s: float | None) -> str:
    """``3 h 05 min``, ``14 min``, ``4 min 12 s``, ``9 s`` (short enough for a metric);
    ``—`` for None."""
    if s is None:
        return "—"
    s = int(round(max(s, 0)))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 600:
        return f"{s // 60} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def fmt_when(dt: datetime | None) -> str:
    """A stored (UTC) time as ``2026-11-29 15:32:10 UTC``; ``—`` for None."""
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "—"


def pace(r: dict[str, Any], m: RunMetrics, now: datetime) -> tuple[float | None, ...]:
    """(elapsed s of this attempt, ETA s, clips/s). The ETA runs the remaining training
    steps at this attempt's mean step rate (validation not counted); None when unknown."""
    start = r.get("started_at")
    elapsed = ((r.get("finished_at") or now) - start).total_seconds() if start else None
    last = m.last("clips_per_s")
    eta = None
    if r["status"] == "running" and r.get("total_steps") and start:
        keys = [k for k in m.series if k[2] == "step"]
        key = ("loss", "train", "step") if ("loss", "train", "step") in m.series else \
            (keys[0] if keys else None)
        pts = [p for p in m.series.get(key, []) if (p["time"] or 0) >= start.timestamp()]
        if len(pts) >= 2 and pts[-1]["time"] > pts[0]["time"]:
            rate = (pts[-1]["step"] - pts[0]["step"]) / (pts[-1]["time"] - pts[0]["time"])
            if rate > 0:
                eta = max(r["total_steps"] - r["step"], 0) / rate
    return elapsed, eta, (last["value"] if last else None)
