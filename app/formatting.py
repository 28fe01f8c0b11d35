"""Numbers as the pages show them: three significant digits with an SI prefix, and changes."""
from __future__ import annotations

import math

_PREFIXES = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def fmt_count(v: float, unit: str = "") -> str:
    """Three significant digits with an SI prefix: 13080000 -> '13.1 M'."""
    if v == 0:
        return f"0 {unit}".strip()
    for p, scale in reversed(_PREFIXES.items()):
        if abs(v) >= scale:
            break
    x = v / scale
    digits = max(0, 2 - int(math.floor(math.log10(abs(x)))))
    return f"{x:.{digits}f} {p}{unit}".strip()


def fmt_delta(cur: float, ref: float, unit: str = "") -> str:
    """'-64% (-18.9 G)' style change of ``cur`` against ``ref``."""
    diff = cur - ref
    sign = "-" if diff < 0 else "+"
    pct = f"{sign}{abs(diff) / ref * 100:.0f}% " if ref else ""
    return f"{pct}({sign}{fmt_count(abs(diff), unit)})"
