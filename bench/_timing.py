"""Timing helper shared by the benchmarks (best-of-N wall-clock)."""
from __future__ import annotations

import time
from typing import Callable


def best(fn: Callable[[], object], repeat: int, *, warmup: bool = False) -> float:
    """Fastest of ``repeat`` calls of ``fn``, in seconds; ``warmup`` first calls it once untimed
    (numba JIT, oneDNN primitive caches)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
