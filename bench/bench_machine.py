"""A reference figure for converting a time budget between machines: GFLOP/s per core of one
fixed dense 3x3x3 convolution training step (forward, input gradient, weight gradient) in
float32, channels-last, one thread -- the operation ResNet3D's blocks are made of.

    python bench/bench_machine.py [--repeat 5] [--threads 1]

Budget on machine B = budget on machine A x (A's figure / B's figure). On a machine shared
with other work the figure is low; take the best of a few runs on a quiet one.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from _timing import best  # noqa: E402

#: the fixed problem: batch 2, 64 -> 64 channels, 8 x 28 x 28, kernel 3x3x3, padding 1
SHAPE = (2, 64, 8, 28, 28)


def step_flops(shape: tuple[int, ...] = SHAPE, c_out: int = 64) -> float:
    """FLOPs of one step: 3 x (2 x MACs of the forward conv)."""
    n, c_in, t, h, w = shape
    return 3 * 2 * n * c_out * t * h * w * c_in * 27


def gflops_per_core(threads: int = 1, repeat: int = 5) -> float:
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    conv = torch.nn.Conv3d(SHAPE[1], 64, 3, padding=1, bias=False).to(
        memory_format=torch.channels_last_3d)
    x = torch.randn(SHAPE).to(memory_format=torch.channels_last_3d).requires_grad_()

    def step() -> None:
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).sum().backward()
    seconds = best(step, repeat, warmup=True)
    return step_flops() / seconds / 1e9 / threads


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    g = gflops_per_core(a.threads, a.repeat)
    print(f"dense 3x3x3 conv step {SHAPE}, float32 channels-last, {a.threads} thread(s): "
          f"{g:.1f} GFLOP/s per core ({step_flops() / 1e9:.2f} GFLOP a step; "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, torch {torch.__version__}, "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
