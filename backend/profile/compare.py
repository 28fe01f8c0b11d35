"""FLOPs ratio beside time and memory ratios: a design against the ResNet3D of its depth."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from backend.csn import ArchSpec
from backend.csn.explore import baseline_spec, default_baseline

from .core import ProfileConfig, ProfileReport, profile
from .roofline import Roof


def _ratio(base: float, design: float) -> float | None:
    return base / design if design else None


def ratio_rows(design_train: ProfileReport, base_train: ProfileReport,
               design_infer: ProfileReport, base_infer: ProfileReport) -> list[dict]:
    """Per stage and in total: baseline / design for multiply-adds, train time (fwd + bwd of
    the stage's rows), inference time and kept activation bytes (> 1: the design is cheaper)."""
    def by(rep: ProfileReport) -> dict[str, dict]:
        return {g["stage"]: g for g in rep.stages}

    dt, bt, di, bi = by(design_train), by(base_train), by(design_infer), by(base_infer)
    rows = []
    for stage in dt:
        if stage not in bt:
            continue
        rows.append({"stage": stage,
                     "flops_ratio": _ratio(bt[stage]["flops"], dt[stage]["flops"]),
                     "train_time_ratio": _ratio(bt[stage]["fwd_ms"] + bt[stage]["bwd_ms"],
                                                dt[stage]["fwd_ms"] + dt[stage]["bwd_ms"]),
                     "infer_time_ratio": _ratio(bi.get(stage, {}).get("fwd_ms", 0.0),
                                                di.get(stage, {}).get("fwd_ms", 0.0)),
                     "memory_ratio": _ratio(bt[stage]["activation_bytes"],
                                            dt[stage]["activation_bytes"])})
    rows.append({"stage": "total",
                 "flops_ratio": _ratio(base_train.totals["flops"], design_train.totals["flops"]),
                 "train_time_ratio": _ratio(base_train.totals["step_ms"], design_train.totals["step_ms"]),
                 "infer_time_ratio": _ratio(base_infer.totals["step_ms"], design_infer.totals["step_ms"]),
                 "memory_ratio": _ratio(base_train.memory["peak_bytes"], design_train.memory["peak_bytes"])})
    return rows


def compare(spec: ArchSpec, cfg: ProfileConfig, baseline: str | None = None, *,
            the_roof: Roof | None = None, progress: Callable[[float], None] | None = None) -> dict:
    """Profile ``spec`` and its baseline (default the ResNet3D of its depth) in training and
    inference; ``{"baseline", "design", "design_infer", "base", "base_infer", "ratios"}``.
    The total memory ratio is of predicted training peaks, the stages' of kept activations."""
    base = baseline_spec(baseline or default_baseline(spec), spec)
    jobs = [("design", spec, "train"), ("base", base, "train"),
            ("design_infer", spec, "infer"), ("base_infer", base, "infer")]
    out: dict = {"baseline": base.name}
    for i, (key, s, mode) in enumerate(jobs):
        sub = None if progress is None else (lambda f, i=i: progress((i + f) / len(jobs)))
        out[key] = profile(s, replace(cfg, mode=mode), the_roof=the_roof, progress=sub)
    out["ratios"] = ratio_rows(out["design"], out["base"], out["design_infer"], out["base_infer"])
    return out
