"""Preset names explained for people: what ``bottleneck-DG-16`` or ``ir-csn-50`` is, read off
the preset's own spec (so the text cannot drift from what the preset builds)."""
from __future__ import annotations

from .presets import preset
from .spec import canonical_block

BLOCK_MEANING = {
    "simple": "simple blocks (3x3x3 -> 3x3x3)",
    "simple-G": "simple blocks with grouped 3x3x3 convs",
    "simple-D": "simple blocks with depthwise 3x3x3 convs",
    "bottleneck": "bottleneck blocks (1x1x1 -> 3x3x3 -> 1x1x1)",
    "bottleneck-G": "bottleneck blocks with a grouped 3x3x3 conv (3D ResNeXt)",
    "bottleneck-D": "bottleneck blocks with a depthwise 3x3x3 conv (ir-CSN)",
    "ip": "bottleneck blocks with an extra 1x1x1 before a depthwise 3x3x3 conv (ip-CSN)",
    "bottleneck-DG": "bottleneck blocks with a depthwise 3x3x3 and grouped 1x1x1 convs",
}


def describe_preset(name: str) -> str:
    """One line: the block type, block count per stage and groups, e.g. ``bottleneck-DG-16:
    bottleneck blocks with a depthwise 3x3x3 and grouped 1x1x1 convs; 16 blocks (3+4+6+3),
    1x1x1 convs in 2 groups``."""
    spec = preset(name)
    blocks = {canonical_block(s.block) for s in spec.stages}
    what = "; ".join(BLOCK_MEANING.get(b, b) for b in sorted(blocks))
    counts = [s.blocks for s in spec.stages]
    text = f"{name}: {what}; {sum(counts)} blocks ({'+'.join(map(str, counts))}), depth {spec.depth}"
    groups = {s.groups for s in spec.stages if s.groups > 1}
    pw = {s.pw_groups for s in spec.stages if s.pw_groups > 1}
    if groups:
        text += f", 3x3x3 convs in {'/'.join(map(str, sorted(groups)))} groups"
    if pw:
        text += f", 1x1x1 convs in {'/'.join(map(str, sorted(pw)))} groups"
    return text
