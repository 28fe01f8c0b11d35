"""The paper's cost tables as data, with the spec each row was counted at.

Conventions found in the paper and VMZ (facebookresearch/VMZ, c2/lib/models/r3d_model.py):
- Table 2: 8x224x224 clips (§4.1), 400 Kinetics classes, fc head. Depth 26 = bottleneck
  blocks (2,2,2,2) with VMZ's SHALLOW_FILTER_CONFIG widths (see presets.py).
- Table 4 (Sports1M): 32x224x224 clips (§5 "Training"), 487 classes, fc head.
- Table 5 (Kinetics): 32x256x256 — Kinetics is tested with 30 crops of 256 (§5 "Testing" follows
  [35]); VMZ only allows crop 256 with ``use_convolutional_pred``: average pool (T/8, 7, 7) at
  stride 1, then a 1x1x1 conv classifier (400 classes) on the 1x2x2 map.
Printed values carry their printed precision; a test checks each one.
"""
from __future__ import annotations

from typing import NamedTuple

from .presets import preset
from .spec import ArchSpec


class PaperRow(NamedTuple):
    table: str
    model: str          # preset name
    metric: str         # "flops" (G multiply-adds) | "params" (M) | "interactions" (G)
    printed: str        # the value as printed in the paper
    accuracy: float | None = None   # video@1 (%) reported beside it, where given

    @property
    def scale(self) -> float:
        return 1e6 if self.metric == "params" else 1e9

    @property
    def decimals(self) -> int:
        return len(self.printed.split(".")[1]) if "." in self.printed else 0


def table_spec(table: str, model: str) -> ArchSpec:
    """The spec a paper table's row was counted at."""
    if table == "2":
        return preset(model)
    if table == "4":
        return preset(model, frames=32, num_classes=487)
    if table == "5":
        return preset(model, frames=32, height=256, width=256, num_classes=400, head="conv",
                      head_pool=(4, 7, 7))
    raise KeyError(table)


_T2 = [  # model, video@1, GFLOPs, M params, G interactions
    ("resnet3d-26", 65.3, "14.3", "20.4", "0.42"), ("ir-csn-26", 62.4, "4.0", "1.7", "0.27"),
    ("ip-csn-26", 64.6, "5.0", "2.4", "0.42"), ("resnet3d-50", 69.4, "29.5", "46.9", "5.68"),
    ("ir-csn-50", 70.3, "10.6", "13.1", "5.42"), ("ip-csn-50", 70.8, "11.9", "14.3", "5.68"),
    ("resnet3d-101", 70.6, "44.7", "85.9", "8.67"), ("ir-csn-101", 71.3, "14.1", "22.1", "8.27"),
    ("ip-csn-101", 71.8, "15.9", "24.5", "8.67"),
]
TABLE2: list[PaperRow] = [
    PaperRow("2", m, metric, v, acc)
    for m, acc, f, p, i in _T2 for metric, v in (("flops", f), ("params", p), ("interactions", i))
]
TABLE4: list[PaperRow] = [
    PaperRow("4", "ir-csn-101", "flops", "56.5", 74.8), PaperRow("4", "ip-csn-101", "flops", "63.6", 74.9),
    PaperRow("4", "ir-csn-152", "flops", "74.0", 75.5), PaperRow("4", "ip-csn-152", "flops", "83.3", 75.5),
]
TABLE5: list[PaperRow] = [
    PaperRow("5", "ir-csn-101", "flops", "73.8", 76.2), PaperRow("5", "ip-csn-101", "flops", "83.0", 76.7),
    PaperRow("5", "ir-csn-152", "flops", "96.7", 76.8), PaperRow("5", "ip-csn-152", "flops", "108.8", 77.8),
]
ALL_ROWS: list[PaperRow] = TABLE2 + TABLE4 + TABLE5
