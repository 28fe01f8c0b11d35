"""Readable charts: log ticks show whole values; point labels are placed apart."""
from __future__ import annotations

import math

from app.chart_layout import label_positions, log_ticks


def test_log_ticks_show_whole_values():
    t = log_ticks([0.3, 0.45, 2.5, 33.0])
    assert "0.5" in t["ticktext"] and "20" in t["ticktext"] and "1" in t["ticktext"]
    for v, text in zip(t["tickvals"], t["ticktext"]):
        assert math.isclose(float(text), v, rel_tol=1e-3)      # "0.4" never reads "4"
    wide = log_ticks([1e-3, 50.0])                              # > 3 decades: powers of ten
    assert all(math.log10(v).is_integer() for v in wide["tickvals"])
    assert log_ticks([]) == {} and log_ticks([0.0, -1.0]) == {}
    narrow = log_ticks([0.268, 0.42])                           # less than a decade
    assert len(narrow["tickvals"]) >= 2 and all(0.25 <= v <= 0.45 for v in narrow["tickvals"])


def test_close_points_get_labels_on_different_sides():
    # ir-CSN-26 / ip-CSN-26 of Table 2: 4.0 vs 5.0 G multiply-adds, 0.42 interactions each
    xs, ys, names = [4.0, 5.0, 14.3, 29.5], [0.42, 0.42, 0.65, 5.68], ["ir-csn-26", "ip-csn-26",
                                                                      "resnet3d-26", "resnet3d-50"]
    pos = label_positions(xs, ys, names, width_px=560, height_px=360)
    assert pos[0] != pos[1]
    assert pos[2] == pos[3] == "top center"                   # far apart: the first choice
