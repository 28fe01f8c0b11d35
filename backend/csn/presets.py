"""Named presets (timm-style registry): ``list_presets()``, ``preset(name, **overrides)``.

Depth follows VMZ's ``BLOCK_CONFIG`` (c2/lib/models/r3d_model.py): 26 is a *bottleneck* net
with (2, 2, 2, 2) blocks; 18 and 34 are simple-block nets. Widths follow the paper's Table 1,
except that VMZ uses its ``SHALLOW_FILTER_CONFIG`` for every depth <= 34: the 26-layer
bottleneck nets have width = inner = 64/128/256/512 (no 4x expansion). That is what Table 2's
depth-26 rows count (14.3 GFLOPs / 20.4 M params for ResNet3D-26); the Table 3 "-8" bottleneck
nets are the same depth-26 nets.
"""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Callable

from .bounds import show, show_names
from .spec import ArchSpec, SpecError, StageSpec, canonical_block, is_simple

BLOCK_CONFIG: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2), 26: (2, 2, 2, 2), 34: (3, 4, 6, 3),
    50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
}
SIMPLE_WIDTHS = (64, 128, 256, 512)                                   # Table 1, simple
BOTTLENECK_WIDTHS = ((256, 64), (512, 128), (1024, 256), (2048, 512))  # Table 1, (out, inner)
DEFAULT_GROUPS = 4      # -G presets: groups of the 3x3x3 convs unless overridden
DEFAULT_PW_GROUPS = 2   # bottleneck-DG presets: groups of the 1x1x1 convs unless overridden

_REGISTRY: dict[str, Callable[..., ArchSpec]] = {}


def _register(name: str, fn: Callable[..., ArchSpec]) -> None:
    _REGISTRY[name] = fn


def resnet_like(*, name: str, blocks: tuple[int, ...], block: str, groups: int = 1,
                pw_groups: int = 1) -> ArchSpec:
    """A Table 1 network with the given block counts and one block type in every stage."""
    shallow = 2 + sum(blocks) * (2 if is_simple(block) else 3) <= 34
    if is_simple(block) or shallow:
        stages = [StageSpec(n, w, w, block, groups, pw_groups) for n, w in zip(blocks, SIMPLE_WIDTHS)]
    else:
        stages = [StageSpec(n, w, i, block, groups, pw_groups)
                  for n, (w, i) in zip(blocks, BOTTLENECK_WIDTHS)]
    return ArchSpec(name=name, stages=stages)


def _add(name: str, blocks, block: str, groups: int = 1, pw_groups: int = 1) -> None:
    _register(name, lambda: resnet_like(name=name, blocks=blocks, block=block, groups=groups,
                                        pw_groups=pw_groups))


for _d in (18, 34):
    _add(f"resnet3d-{_d}", BLOCK_CONFIG[_d], "simple")
for _d in (26, 50, 101, 152):
    _add(f"resnet3d-{_d}", BLOCK_CONFIG[_d], "bottleneck")
    _add(f"ir-csn-{_d}", BLOCK_CONFIG[_d], "bottleneck-D")
    _add(f"ip-csn-{_d}", BLOCK_CONFIG[_d], "ip")
# Table 3 naming: block name + total number of blocks (8 = 2,2,2,2; 16 = 3,4,6,3)
for _n, _cfg in ((8, (2, 2, 2, 2)), (16, (3, 4, 6, 3))):
    _add(f"simple-{_n}", _cfg, "simple")
    _add(f"simple-G-{_n}", _cfg, "simple-G", groups=DEFAULT_GROUPS)
    _add(f"simple-D-{_n}", _cfg, "simple-D")
    _add(f"bottleneck-{_n}", _cfg, "bottleneck")
    _add(f"bottleneck-G-{_n}", _cfg, "bottleneck-G", groups=DEFAULT_GROUPS)
    _add(f"bottleneck-D-{_n}", _cfg, "bottleneck-D")
    _add(f"bottleneck-DG-{_n}", _cfg, "bottleneck-DG", pw_groups=DEFAULT_PW_GROUPS)


def motion_ir_csn() -> ArchSpec:
    """The shipped demo model (backend/assets/motion_csn.pt): a tiny ir-CSN for the generated
    motion dataset (backend.synth, 8 classes) at 8x48x48 that trains on 2 CPU cores in minutes.
    No pool1: at 48 px the extra max-pool loses the few-pixel motion it must see (measured:
    with pool1 it stayed near chance for 14 epochs where without it reached 0.75)."""
    stages = [StageSpec(2, w, w, "bottleneck-D") for w in (16, 32, 64, 128)]
    return ArchSpec(name="motion-ir-csn", stages=stages, frames=8, height=48, width=48,
                    num_classes=8, stem_width=16, pool1=False)


_register("motion-ir-csn", motion_ir_csn)

_STAGE_FIELDS = {f.name for f in fields(StageSpec)}
_ARCH_FIELDS = {f.name for f in fields(ArchSpec)}


def list_presets() -> list[str]:
    """All preset names, in registration order."""
    return list(_REGISTRY)


def preset(name: str, /, *, stage_overrides: dict[int, dict[str, Any]] | None = None,
           **overrides: Any) -> ArchSpec:
    """Build a named preset, then apply overrides.

    ``overrides`` may name any :class:`ArchSpec` field (``frames=32``, ``num_classes=10``) or a
    stage field (``groups``, ``pw_groups``, ``block``, ``blocks``, ``inner``), which is then
    applied to every stage. ``width`` is the clip width; stage widths go through
    ``stage_overrides``.
    ``stage_overrides={1: {"groups": 8}}`` changes single stages (0 = conv2_x).
    """
    try:
        spec = _REGISTRY[name]()
    except KeyError:
        raise SpecError("", f"unknown preset {show(name)}; list them with list_presets() "
                        f"or `python -m backend.count --list`") from None
    unknown = set(overrides) - _STAGE_FIELDS - _ARCH_FIELDS
    if unknown:
        raise SpecError("", f"unknown override(s) {show_names(unknown)}")
    stage_wide = {k: overrides.pop(k) for k in list(overrides) if k in _STAGE_FIELDS - _ARCH_FIELDS}
    if stage_wide:
        if "block" in stage_wide:
            stage_wide["block"] = canonical_block(stage_wide["block"], "block")
        spec = replace(spec, stages=[replace(s, **stage_wide) for s in spec.stages])
    for idx, changes in (stage_overrides or {}).items():
        idx = int(idx)
        if not 0 <= idx < len(spec.stages):
            raise SpecError("stage_overrides", f"stage index {idx} out of range 0..3")
        bad = set(changes) - _STAGE_FIELDS
        if bad:
            raise SpecError("stage_overrides", f"unknown stage field(s) {show_names(bad)}")
        spec = spec.with_stage(idx, **changes)
    if overrides:
        spec = replace(spec, **overrides)
    return spec
