"""Depthwise 3x3x3 conv alone: the fast path against plain PyTorch, at ir-CSN-50's shapes.

    python bench/bench_depthwise.py [--threads 2] [--repeat 5] [--quick]

One row per distinct depthwise layer of ir-CSN-50 (channels, input T x H x W, stride) at
8x112x112 and 8x224x224, batch 8 and 1. Columns: median milliseconds of plain nn.Conv3d
on contiguous input, on channels_last_3d input, and DepthwiseConv3d (channels_last_3d input),
forward only and forward+backward (input and weight gradients). Repetitions are interleaved
and every ratio compares numbers from the same run; "speed-up" is against the best plain
layout. Target: fwd+bwd speed-up >= 5x at every shape.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from backend.csn import plan, preset  # noqa: E402
from backend.csn.depthwise import HAVE_NUMBA, DepthwiseConv3d  # noqa: E402

CL = torch.channels_last_3d


def stage_shapes(size: int) -> list[tuple[str, int, tuple[int, int, int], tuple[int, int, int]]]:
    """(first layer name, channels, input THW, stride) of each distinct depthwise conv."""
    seen, out = set(), []
    for p in plan(preset("ir-csn-50", frames=8, height=size, width=size)):
        key = (p.c_in, p.in_size, p.stride)
        if p.kind == "depthwise" and key not in seen:
            seen.add(key)
            out.append((p.name, *key))
    return out


def run_case(batch: int, c: int, thw, stride, repeat: int) -> dict[str, float]:
    torch.manual_seed(0)
    plain = nn.Conv3d(c, c, 3, stride, 1, groups=c, bias=False)
    fast = DepthwiseConv3d(c, stride)
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(batch, c, *thw)
    xcl = x.contiguous(memory_format=CL)
    variants = {"plain": (plain, x), "plain_cl": (plain, xcl), "fast": (fast, xcl)}

    def fwd(m, inp):
        with torch.no_grad():
            m(inp)

    def fwd_bwd(m, inp):
        inp = inp.detach().requires_grad_()
        m.weight.grad = None
        y = m(inp)
        y.backward(torch.ones_like(y))

    times: dict[str, list[float]] = {}
    for name, (m, inp) in variants.items():  # warm-up (numba compile, oneDNN primitives)
        fwd(m, inp)
        fwd_bwd(m, inp)
    for _ in range(repeat):
        for name, (m, inp) in variants.items():
            for kind, fn in (("fwd", fwd), ("fb", fwd_bwd)):
                t0 = time.perf_counter()
                fn(m, inp)
                times.setdefault(f"{name}.{kind}", []).append(time.perf_counter() - t0)
    return {k: min(v) * 1e3 for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="112x112 only, 3 repeats")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = (112,) if args.quick else (112, 224)
    repeat = 3 if args.quick else args.repeat
    print(f"threads={args.threads} numba={HAVE_NUMBA} torch={torch.__version__}; "
          f"best-of-{repeat} interleaved runs, ms")
    hdr = (f"{'clip':>4} {'N':>2} {'layer':16} {'C':>4} {'in THW':>10} {'stride':>7} | "
           f"{'fwd plain':>9} {'cl':>6} {'fast':>6} {'x':>5} | "
           f"{'f+b plain':>9} {'cl':>6} {'fast':>6} {'x':>5}")
    print(hdr)
    print("-" * len(hdr))
    worst = float("inf")
    for size in sizes:
        for batch in (8, 1):
            for name, c, thw, stride in stage_shapes(size):
                r = run_case(batch, c, thw, stride, repeat)
                bf = min(r["plain.fwd"], r["plain_cl.fwd"])
                bb = min(r["plain.fb"], r["plain_cl.fb"])
                worst = min(worst, bb / r["fast.fb"])
                print(f"{size:4d} {batch:2d} {name:16} {c:4d} {'x'.join(map(str, thw)):>10} "
                      f"{''.join(map(str, stride)):>7} | {r['plain.fwd']:9.2f} {r['plain_cl.fwd']:6.2f} "
                      f"{r['fast.fwd']:6.2f} {bf / r['fast.fwd']:4.1f}x | {r['plain.fb']:9.2f} "
                      f"{r['plain_cl.fb']:6.2f} {r['fast.fb']:6.2f} {bb / r['fast.fb']:4.1f}x",
                      flush=True)
    print(f"\nworst fwd+bwd speed-up vs best plain layout: {worst:.1f}x (target >= 5x: "
          f"{'met' if worst >= 5 else 'NOT met'})")


if __name__ == "__main__":
    main()
