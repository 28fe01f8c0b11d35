"""Plain-data shaping of runs and metrics for the Runs, Run detail and Compare pages."""
from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache
from typing import Any

from backend.csn import ArchSpec, SpecError, count
from backend.explore import stage_block_label

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


def run_row(r: dict[str, Any]) -> dict[str, Any]:
    """One table row: status, progress, architecture, key hparams, best val video@1, costs."""
    hp = r.get("hparams") or {}
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
        "created": r.get("created_at"),
    }


def devices_label(r: dict[str, Any]) -> str:
    """What the run ran on (``GPU 0,1`` / ``CPU``), or why a queued run is still waiting."""
    if r.get("status") == "queued":
        return r.get("wait_reason") or ""
    d = r.get("devices")
    return "" if d is None else f"GPU {d}" if d else "CPU"


def metric_series(points: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``{metric name: {series label: [(step, value)]}}``; a label is the split (or event)."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for p in points:
        if p["event"] not in ("step", "epoch"):
            continue
        label = p["split"] or "train"
        if p["event"] == "epoch":
            label += " (epoch)"
        out.setdefault(p["name"], {}).setdefault(label, []).append((p["step"], p["value"]))
    return out


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
