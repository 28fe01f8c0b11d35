"""GPU checks for backend.profile (run by bench/gpu_check.sh; ~5 min on one GPU).

1. predicted vs measured training peak (``torch.cuda.max_memory_allocated``) and analytic vs
   saved-tensor activation bytes, fp32, for ir-CSN-152 / ip-CSN-152 / ResNet3D-152;
2. depthwise 3x3x3 forward + backward: DepthwiseConv3d vs nn.Conv3d (the CUDA counterpart of
   bench_depthwise.py), and the ir-CSN-50 train step fast vs native depthwise (of bench_step.py).
The per-layer profiles (fp32 / bf16 x contiguous / channels_last_3d) are separate
``python -m backend.profile`` calls in the shell script.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from backend.csn import build_model, preset  # noqa: E402
from backend.csn.ops import set_depthwise_impl  # noqa: E402
from backend.csn.perf import PerfSettings, prepare_input, prepare_model  # noqa: E402
from backend.profile import memory_model, saved_activation_bytes  # noqa: E402

DEV = "cuda"


def peak_check(name: str, batch: int, frames: int, size: int) -> None:
    spec = preset(name, frames=frames, height=size, width=size)
    s = PerfSettings(DEV, channels_last=True)
    model = prepare_model(build_model(spec), DEV, train=True, settings=s)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x = prepare_input(torch.randn(batch, 3, *spec.clip), s)
    y = torch.randint(0, spec.num_classes, (batch,), device=DEV)
    saved, _ = saved_activation_bytes(model, x)
    mm = memory_model(spec, batch, "sgd", DEV)
    for _ in range(2):                         # step 2 has the momentum buffers
        torch.cuda.reset_peak_memory_stats()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    torch.cuda.synchronize()
    got = torch.cuda.max_memory_allocated()
    print(f"{name:12} batch {batch} {frames}x{size}^2: activations analytic "
          f"{mm.activation_bytes / 2**20:.1f} MiB, saved-tensor {saved / 2**20:.1f} MiB "
          f"({'equal' if saved == mm.activation_bytes else 'DIFFERENT'}); predicted peak "
          f"{mm.peak_bytes / 2**30:.2f} GiB, measured {got / 2**30:.2f} GiB "
          f"({100 * (mm.peak_bytes / got - 1):+.1f}%)")
    del model, opt, x


def _time(fn, repeat: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def depthwise_check() -> None:
    from backend.csn.depthwise import DepthwiseConv3d
    print("\ndepthwise 3x3x3 fwd+bwd, channels_last_3d fp32 (ms): shape, nn.Conv3d, DepthwiseConv3d")
    for n, c, t, hw, st in ((8, 64, 32, 56, 1), (8, 128, 16, 28, 2), (8, 256, 8, 14, 1),
                            (8, 512, 4, 7, 1)):
        x = torch.randn(n, c, t, hw, hw, device=DEV).contiguous(
            memory_format=torch.channels_last_3d).requires_grad_()
        times = []
        for conv in (torch.nn.Conv3d(c, c, 3, st, 1, groups=c, bias=False), DepthwiseConv3d(c, (st,) * 3)):
            conv = conv.to(DEV, memory_format=torch.channels_last_3d)
            times.append(_time(lambda: conv(x).sum().backward()))
        print(f"  {n}x{c}x{t}x{hw}x{hw} s{st}: {1e3 * times[0]:.2f}  {1e3 * times[1]:.2f} "
              f"({times[0] / times[1]:.2f}x)")


def step_check(batch: int = 8) -> None:
    print(f"\nir-CSN-50 train step, batch {batch}, 8x112x112 fp32 channels_last_3d (ms)")
    res = {}
    for impl in ("native", "fast"):
        set_depthwise_impl(impl)
        try:
            spec = preset("ir-csn-50", frames=8, height=112, width=112)
            s = PerfSettings(DEV, channels_last=True, depthwise=impl, cudnn_benchmark=True)
            model = prepare_model(build_model(spec), DEV, train=True, settings=s)
        finally:
            set_depthwise_impl(None)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        x = prepare_input(torch.randn(batch, 3, *spec.clip), s)
        y = torch.randint(0, 400, (batch,), device=DEV)

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        res[impl] = _time(step)
        print(f"  {impl:7} {1e3 * res[impl]:.1f}")
    print(f"  fast vs native: {res['native'] / res['fast']:.2f}x")


if __name__ == "__main__":
    print(torch.cuda.get_device_name(), torch.__version__)
    for name in ("ir-csn-152", "ip-csn-152", "resnet3d-152"):
        peak_check(name, 8, 32, 224)
    depthwise_check()
    step_check()
