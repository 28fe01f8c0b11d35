"""Display downsampling of metric series: per-bucket min, max and last point (pure Python).

A step series is cut into buckets of ``w`` steps (``w`` a power of two, buckets aligned at
step 0; 1 while the series' last step is below ``max_points``, else the smallest giving at
most ``max_points // 3`` buckets up to the last step). Each bucket keeps its first point with
the smallest value, its first point with the largest value and its last point, so the
curve's envelope and its end are exact. Since ``w`` depends only on the last step and only doubles as a run grows, reducing
an already reduced series together with its new points gives exactly what reducing every
stored point would (:func:`merge`): a page can poll for new points and stay bounded.

Points are sequences or mappings; ``step``/``value`` pick the fields (index or key).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def bucket_width(last_step: int, max_points: int) -> int:
    """The bucket width in steps (a power of two) for a series ending at ``last_step``: 1
    while the steps fit in ``max_points``, else the smallest giving ``max_points // 3``
    buckets or fewer."""
    if last_step < max_points:
        return 1
    buckets = max(1, max_points // 3)
    w = 1
    while last_step // w + 1 > buckets:
        w *= 2
    return w


def reduce(points: Sequence[Any], max_points: int, step: Any = "step",
           value: Any = "value") -> list[Any]:
    """``points`` (sorted by step, then insertion) reduced to at most ``max_points``.

    A series with one point per step below ``max_points`` comes back whole.
    """
    if not points:
        return []
    w = bucket_width(points[-1][step], max_points)
    keep: list[int] = []
    cur: Any = None
    lo = hi = 0
    lo_v = hi_v = 0.0
    for i, p in enumerate(points):
        b = p[step] // w
        if b != cur:
            if cur is not None:
                keep += sorted({lo, hi, i - 1})
            cur, lo, hi, lo_v = b, i, i, p[value]
            hi_v = lo_v
        else:
            v = p[value]
            if v < lo_v:
                lo, lo_v = i, v
            elif v > hi_v:
                hi, hi_v = i, v
    keep += sorted({lo, hi, len(points) - 1})
    return [points[i] for i in keep]


def merge(kept: list[Any], new: Sequence[Any], max_points: int, step: Any = "step",
          value: Any = "value") -> list[Any]:
    """A shown series ``kept`` with its ``new`` points: equal to reducing every stored point."""
    pts = kept + list(new)
    if new and kept and new[0][step] < kept[-1][step]:
        pts.sort(key=lambda p: p[step])  # a late point: keep step order (the sort is stable)
    return reduce(pts, max_points, step, value)
