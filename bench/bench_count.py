"""Time the analytic counter against torch's FlopCounterMode on the same spec (one run).

    python bench/bench_count.py
Prints one row per spec: count() time, FlopCounterMode (meta-device forward) time, ratio.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from backend.csn import build_model, count, preset  # noqa: E402


def best_of(fn, repeat: int, number: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def flop_counter_pass(spec) -> int:
    with torch.device("meta"):
        model = build_model(spec)
        x = torch.empty(1, 3, *spec.clip)
    fc = FlopCounterMode(display=False)
    with fc:
        model(x)
    return fc.get_total_flops()


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for name, kw in (("ir-csn-50", {}), ("ir-csn-152", {"frames": 32}), ("ip-csn-152", {"frames": 32}),
                     ("resnet3d-101", {})):
        spec = preset(name, **kw)
        assert 2 * count(spec).totals.flops == flop_counter_pass(spec)
        t_count = best_of(lambda: count(spec), repeat=5, number=200)
        t_torch = best_of(lambda: flop_counter_pass(spec), repeat=3, number=2)
        rows.append((f"{name} T={spec.frames}", len(count(spec).layers), t_count, t_torch))
    print(f"{'spec':24} {'layers':>6} {'count() us':>11} {'FlopCounterMode ms':>19} {'ratio':>8}")
    for label, n, tc, tt in rows:
        print(f"{label:24} {n:6d} {tc * 1e6:11.0f} {tt * 1e3:19.1f} {tt / tc:7.0f}x")


if __name__ == "__main__":
    main()
