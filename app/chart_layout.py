"""Readable plotly axes and labels: log ticks that show their whole value, point labels placed
where they do not cover each other."""
from __future__ import annotations

import math
from typing import Sequence

# where a point's label may go, in order of preference: (plotly textposition, sx, sy), the
# side of the marker the label's box sits on
_POSITIONS = (("top center", 0, 1), ("bottom center", 0, -1), ("middle right", 1, 0),
              ("middle left", -1, 0), ("top right", 1, 1), ("bottom left", -1, -1),
              ("top left", -1, 1), ("bottom right", 1, -1))
CHAR_PX, LINE_PX = 7.5, 18.0   # a label's box at plotly's default 12 px font, with a margin
MARKER_PX = 8.0                # half a marker, with a margin


_STEPS = ((1,), (1, 2, 5), (1, 2, 3, 5, 7), (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9))


def log_ticks(values: Sequence[float]) -> dict:
    """Tick values and texts for a log axis over ``values``, each labelled with its whole
    value, so 0.4 never reads as "4" nor 20 as "2" (plotly's default minor-digit labels): the
    coarsest of powers of ten, 1-2-5, 1-2-3-5-7 or every digit that puts three ticks inside
    the data's range; the data values themselves when even that does not."""
    vs = [v for v in values if v and v > 0 and math.isfinite(v)]
    if not vs:
        return {}
    lo_v, hi_v = min(vs) / 1.05, max(vs) * 1.05   # about what plotly's autorange shows
    lo, hi = math.floor(math.log10(lo_v)), math.ceil(math.log10(hi_v))
    ticks: list[float] = []
    for steps in _STEPS:
        ticks = [float(f"{m * 10.0 ** e:.3g}") for e in range(lo, hi + 1) for m in steps]
        ticks = [t for t in ticks if lo_v <= t <= hi_v]
        if len(ticks) >= 3:
            break
    if len(ticks) < 2:
        ticks = sorted({float(f"{v:.3g}") for v in vs})
    return {"tickvals": ticks, "ticktext": [f"{t:.3g}" for t in ticks]}


def _norm(vs: Sequence[float], log: bool) -> list[float]:
    xs = [math.log10(v) if log else v for v in vs]
    lo, hi = min(xs), max(xs)
    span = (hi - lo) or 1.0
    return [(x - lo) / span for x in xs]


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return abs(a[0] - b[0]) * 2 < a[2] + b[2] and abs(a[1] - b[1]) * 2 < a[3] + b[3]


def label_positions(xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], *,
                    width_px: float = 560, height_px: float = 360,
                    log: tuple[bool, bool] = (True, True)) -> list[str]:
    """A plotly ``textposition`` per point so that no two labels (and no label and marker)
    cover each other, for a plot area of about ``width_px`` × ``height_px``; greedy, first
    choice "top center"."""
    nx, ny = _norm(xs, log[0]), _norm(ys, log[1])
    # the data span covers about 80 % of the plot area (plotly pads the autorange)
    px = [(0.1 + 0.8 * x) * width_px for x in nx]
    py = [(0.1 + 0.8 * y) * height_px for y in ny]
    markers = [(x, y, 2 * MARKER_PX, 2 * MARKER_PX) for x, y in zip(px, py)]
    placed: list[tuple[float, ...]] = []
    out = []
    for i, text in enumerate(texts):
        w, h = CHAR_PX * len(text) + 8, LINE_PX
        options = []
        for pos, sx, sy in _POSITIONS:
            box = (px[i] + sx * (w / 2 + MARKER_PX), py[i] + sy * (h / 2 + MARKER_PX), w, h)
            hits = sum(_overlaps(box, b) for b in placed) + sum(
                _overlaps(box, m) for j, m in enumerate(markers) if j != i)
            options.append((hits, pos, box))
            if hits == 0:
                break
        hits, pos, box = min(options, key=lambda o: o[0])
        placed.append(box)
        out.append(pos)
    return out
