"""Builder helpers (no UI): baselines, error -> form field mapping, tables, paper points, timing.

The Streamlit builder calls these; they take and return plain data so they are testable
without a browser and usable from a notebook.
"""
from __future__ import annotations

import re
import time
from dataclasses import fields, replace
from functools import lru_cache
from typing import Any

from . import ArchSpec, CountReport, SpecError, count, list_presets, preset
from .bounds import LIMITS
from .clipfit import least_valid
from .paper import TABLE2, table_spec
from .spec import STAGE_NAMES, canonical_block, is_simple

#: Fields of ArchSpec that are not the stages: copied onto a baseline so both count alike.
_NON_STAGE = [f.name for f in fields(ArchSpec) if f.name not in ("name", "stages")]
_STAGE_FIELDS = ("blocks", "width", "inner", "block", "groups", "pw_groups", "temporal_stride")


def default_baseline(spec: ArchSpec) -> str:
    """The ResNet3D preset of the same depth (e.g. resnet3d-50 for ir-CSN-50); else resnet3d-50."""
    name = f"resnet3d-{spec.depth}"
    return name if name in list_presets() else "resnet3d-50"


def baseline_spec(name: str, like: ArchSpec) -> ArchSpec:
    """Preset ``name`` counted at ``like``'s clip, classes, head, pool1 and striding."""
    return replace(preset(name), **{f: getattr(like, f) for f in _NON_STAGE})


_LAYER_RE = re.compile(r"^conv([2-5])_(\d+|x)(?:\.(\w+))?$")


def error_field(err: SpecError, spec: ArchSpec) -> tuple[int | None, str]:
    """Which form field a :class:`SpecError` belongs to: ``(stage index or None, field)``.

    ``conv3_x.groups`` -> (1, "groups"); ``conv3_1.conv_b`` (a groups rule) -> (1, "groups")
    for -G blocks, ``pw_groups`` for the outer convs of -DG blocks, else "width"/"inner";
    size rules (stem, pools, strides) map to (None, "clip"); spec fields map to themselves.
    """
    layer = err.layer or ""
    m = _LAYER_RE.match(layer)
    if m:
        si, part = int(m.group(1)) - 2, m.group(3) or ""
        if m.group(2) == "x":
            return si, part if part in _STAGE_FIELDS else "block"
        if "too small" in err.rule or "stride" in err.rule:
            return None, "clip"
        try:
            b = canonical_block(spec.stages[si].block)
        except SpecError:
            return si, "block"
        if "groups" in err.rule:
            if part == "conv_b" and b in ("simple-G", "bottleneck-G"):
                return si, "groups"
            if part.startswith("conv_a") and b == "simple-G":
                return si, "groups"
            if part in ("conv_a", "conv_c") and b == "bottleneck-DG":
                return si, "pw_groups"
            return si, "inner" if part == "conv_b" else "width"
        return si, "block"
    if layer == "head_pool" and "larger than" in err.rule:
        return None, "clip"
    if layer in ("conv1", "pool1", "pool2", "head.pool"):
        return None, "clip"
    if layer in ("frames", "height", "width"):
        return None, "clip"
    return None, layer or "spec"


def _fmt3(t) -> str:
    return "x".join(str(v) for v in t)


def layer_rows(report: CountReport) -> list[dict[str, Any]]:
    """One dict per layer for a table: shapes as 'TxHxW', counts in natural units."""
    return [{
        "layer": l.name, "stage": l.stage, "kind": l.kind, "c_in": l.c_in, "c_out": l.c_out,
        "groups": l.groups, "kernel": _fmt3(l.kernel), "stride": _fmt3(l.stride),
        "output": _fmt3(l.out_size), "params": l.params, "MAdds (M)": l.flops / 1e6,
        "interactions": l.interactions,
    } for l in report.layers]


def stage_rows(report: CountReport) -> list[dict[str, Any]]:
    """Per-stage totals in display units: params (M), multiply-adds (G), interactions (G)."""
    return [{"stage": k, "params (M)": t.params / 1e6, "multiply-adds (G)": t.flops / 1e9,
             "interactions (G)": t.interactions / 1e9} for k, t in report.by_stage().items()]


@lru_cache(maxsize=1)
def paper_points() -> tuple[dict[str, Any], ...]:
    """Table 2's models, counted here, with the paper's video@1 (Kinetics, %)."""
    out = []
    for r in TABLE2:
        if r.metric != "flops":
            continue
        t = count(table_spec("2", r.model)).totals
        out.append({"model": r.model, "video@1": r.accuracy, "flops (G)": t.flops / 1e9,
                    "interactions (G)": t.interactions / 1e9, "params (M)": t.params / 1e6,
                    "family": r.model.rsplit("-", 1)[0]})
    return tuple(out)


def stage_block_label(spec: ArchSpec) -> str:
    """A short block-type label: the common block of all stages, or 'mixed'."""
    blocks = {canonical_block(s.block) for s in spec.stages}
    return blocks.pop() if len(blocks) == 1 else "mixed"


def measure_forward(spec: ArchSpec, *, threads: int = 1, repeats: int = 2,
                    batch: int = 1) -> dict[str, float]:
    """Build ``spec`` and time a forward pass on this machine (CPU, no grad, channels_last_3d).

    Returns ``{"ms": best, "ms_mean": mean, "threads": n, "build_s": s}``. FLOPs do not predict
    depthwise speed: depthwise convs do few multiply-adds per byte moved.
    """
    import torch

    from . import build_model
    from .perf import prepare_input, prepare_model, recommended_settings

    spec.validate()
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        t0 = time.perf_counter()
        settings = recommended_settings("cpu", train=False)
        model = prepare_model(build_model(spec), "cpu", train=False, settings=settings)
        build_s = time.perf_counter() - t0
        x = prepare_input(torch.randn(batch, spec.in_channels, *spec.clip), settings)
        times = []
        with torch.no_grad():
            model(x)  # warm-up
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(old)
    return {"ms": min(times), "ms_mean": sum(times) / len(times), "threads": float(threads),
            "build_s": build_s}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _valid(spec: ArchSpec) -> bool:
    try:
        spec.validate()
    except SpecError:
        return False
    return True


def valid_values(spec: ArchSpec, stage: int | None, field: str, limit: int = 12) -> list[Any]:
    """Values of one form field that make ``spec`` valid with every other field unchanged:
    divisors for ``groups`` / ``pw_groups``, multiples of the groups for ``width`` / ``inner``,
    the smallest clip sizes for ``clip`` (``frames``, ``height``), ``[False]`` for
    ``temporal_stride`` when turning striding off helps. Empty when nothing nearby works."""
    if stage is not None and field in ("groups", "pw_groups"):
        s = spec.stages[stage]
        cands = _divisors(max(s.width, s.inner))
        return [v for v in cands if _valid(spec.with_stage(stage, **{field: v}))][:limit]
    if stage is not None and field in ("width", "inner"):
        s = spec.stages[stage]
        step = max(s.groups, s.pw_groups, 1)
        here = getattr(s, field)
        cands = sorted({max(step, (here // step + k) * step) for k in range(-3, 4)})
        changes = (lambda v: {"width": v, "inner": v}) if is_simple(s.block) else (lambda v: {field: v})
        return [v for v in cands if _valid(spec.with_stage(stage, **changes(v)))][:limit]
    if field in ("clip", "frames", "height", "width"):
        out = []
        for f in ("frames", "height"):   # each is monotone: bisect up to the limits
            grow = (lambda v: {"frames": v}) if f == "frames" else (
                lambda v: {"height": v, "width": max(v, spec.width)})
            v = least_valid(lambda v: _valid(replace(spec, **grow(v))),
                            LIMITS["frames" if f == "frames" else "side"], getattr(spec, f))
            if v is not None:
                out.append((f, v))
        return out
    if field == "temporal_stride" or stage is not None:
        off = replace(spec, temporal_stride=False, stages=[replace(s, temporal_stride=None if i == 0 else False)
                                                           for i, s in enumerate(spec.stages)])
        return [False] if _valid(off) else []
    return []


__all__ = ["valid_values", "default_baseline", "baseline_spec", "error_field", "layer_rows", "stage_rows",
           "paper_points", "stage_block_label", "measure_forward", "STAGE_NAMES"]
