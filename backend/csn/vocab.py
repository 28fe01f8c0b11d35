"""The words a spec is made of (block types, heads, stage names, channel orders, the default
normalisation) and :class:`SpecError`: shared by the spec, its bounds and the presets."""
from __future__ import annotations

BLOCK_TYPES: tuple[str, ...] = (
    "simple", "simple-G", "simple-D",
    "bottleneck", "bottleneck-G", "bottleneck-D", "ip", "bottleneck-DG",
)
#: Accepted spellings that map onto a canonical block type.
BLOCK_ALIASES: dict[str, str] = {"ir": "bottleneck-D", "ir-csn": "bottleneck-D", "ip-csn": "ip"}
HEADS: tuple[str, ...] = ("fc", "conv")
STAGE_NAMES: tuple[str, ...] = ("conv2", "conv3", "conv4", "conv5")
INPUT_ORDERS: tuple[str, ...] = ("RGB", "BGR")
INPUT_CENTRES: tuple[str, ...] = ("none", "temporal")
#: Default input normalisation: Kinetics statistics as VMZ uses them, per channel on the 0-1
#: scale (pixel / 255), RGB order. backend.data.video normalises with a spec's own values.
KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)


class SpecError(ValueError):
    """A spec that cannot be built. ``layer`` names where, the message says which rule."""

    def __init__(self, layer: str, rule: str):
        self.layer, self.rule = layer, rule
        super().__init__(f"{layer}: {rule}" if layer else rule)
