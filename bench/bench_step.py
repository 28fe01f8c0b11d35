"""Train-step and inference throughput: fast depthwise path + recommended settings vs plain.

    python bench/bench_step.py [--threads 2] [--batch 4] [--repeat 3] [--quick] [--no-infer]
    python bench/bench_step.py --contended-only [--batch 2 --repeat 2]   # only the rows of 3.

1. Train step (forward + backward + SGD step), clips/s, 8x112x112, for ir-CSN-50, ip-CSN-50
   and ResNet3D-50. "plain" = nn.Conv3d everywhere, contiguous float32 (the way the models
   are built without this project's perf settings); "fast" = DepthwiseConv3d +
   PointwiseConv3d + ``backend.csn.perf.recommended_settings`` (channels_last_3d, float32);
   "fast-dw" = the same with plain 1x1x1 convs (what the pointwise GEMMs add). Extra rows
   isolate the layout (fast depthwise on contiguous tensors) and bf16 autocast (only on a CPU
   with native bf16: elsewhere it is a ~19x slower fallback, skipped). Prints the wall-clock
   speed-up of ir-CSN-50 over ResNet3D-50 beside their FLOP ratio (``backend.csn.count``).
2. Inference (batch 1, no_grad, eval), clips/s, ir-CSN-152 at 8x224x224 and 32x224x224
   (``--quick``: 8 frames only).
3. Contended (``--contended``, ``--contended-only``; ``bench/_contention.py``, which also holds
   the train-step variants and the interleaved timing used here): the ir-CSN-50
   step alone and beside another 2-thread training process, per ``OMP_WAIT_POLICY``, and the
   profiler's overhead.
Repetitions are interleaved across variants; times are best-of (the machine is shared).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from backend.csn import count, preset  # noqa: E402
from backend.csn.perf import PerfSettings, cpu_native_precisions, prepare_input  # noqa: E402

from _contention import contended_rows, interleaved_best, make, train_step_fn  # noqa: E402


def infer_fn(model: nn.Module, s: PerfSettings, frames: int, size: int):
    x = prepare_input(torch.randn(1, 3, frames, size, size), s)

    def run() -> None:
        with torch.inference_mode():
            model(x)
    return run


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer variants, inference at 8 frames")
    ap.add_argument("--no-infer", action="store_true")
    ap.add_argument("--contended", action="store_true", help="also the contended rows")
    ap.add_argument("--contended-only", action="store_true", help="only the contended rows")
    return ap.parse_args()


def main() -> None:
    args = _args()
    if args.contended_only:
        return contended_rows(args.threads, args.batch, args.repeat)
    if args.contended:
        import atexit
        atexit.register(contended_rows, args.threads, args.batch, args.repeat)
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} torch={torch.__version__}; best-of-{args.repeat} interleaved")
    native = cpu_native_precisions()
    print(f"native reduced precision on this CPU: {', '.join(sorted(native)) or 'none'}")
    # bf16 without native support runs a scalar fallback (~19x slower): skipped, not timed
    bf16 = [] if args.quick or "bf16" not in native else ["fast-bf16"]
    train_rows(args.batch, args.repeat, args.quick, bf16)
    if not args.no_infer:
        inference_rows(args.repeat, args.quick)


def train_rows(b: int, repeat: int, quick: bool, bf16: list[str], frames: int = 8,
               size: int = 112) -> None:
    """1. The train-step table, then ir-CSN-50's speed-up over ResNet3D-50 against the FLOPs."""
    arch_variants = {
        "ir-csn-50": (["plain", "fast", "fast-dw"] + ([] if quick else ["plain-cl", "fast-contig"])
                      + bf16),
        "ip-csn-50": ["plain", "fast"],
        "resnet3d-50": ["plain", "fast", "fast-dw"],
    }
    fns = {}
    for arch, variants in arch_variants.items():
        for v in variants:
            model, s = make(arch, v, frames, size, train=True)
            fns[(arch, v)] = train_step_fn(model, s, b, frames, size)
    t = interleaved_best(fns, repeat)
    del fns
    print(f"\nTrain step, batch {b}, clip {frames}x{size}x{size}, SGD momentum")
    hdr = f"{'arch':12} {'variant':12} {'s/step':>7} {'clips/s':>8} {'vs plain':>9}"
    print(hdr)
    print("-" * len(hdr))
    for (arch, v), sec in t.items():
        print(f"{arch:12} {v:12} {sec:7.3f} {b / sec:8.2f} {t[(arch, 'plain')] / sec:8.2f}x")
    _speedup_rows(t, frames, size)


def _speedup_rows(t: dict[tuple[str, str], float], frames: int, size: int) -> None:
    ir, r3 = (preset(n, frames=frames, height=size, width=size) for n in ("ir-csn-50", "resnet3d-50"))
    flop_ratio = count(r3).totals.flops / count(ir).totals.flops
    print(f"\nir-CSN-50 vs ResNet3D-50: FLOP ratio {flop_ratio:.2f}x")
    # the last row is the honest one: our fast ir-CSN against ResNet3D-50's faster variant
    r3_best = min(sec for (arch, _), sec in t.items() if arch == "resnet3d-50")
    for label, r3_sec, ir_sec in (("plain vs plain", t[("resnet3d-50", "plain")], t[("ir-csn-50", "plain")]),
                                  ("fast vs fast", t[("resnet3d-50", "fast")], t[("ir-csn-50", "fast")]),
                                  ("fast vs best ResNet3D", r3_best, t[("ir-csn-50", "fast")])):
        wall = r3_sec / ir_sec
        print(f"  {label:22} wall-clock speed-up {wall:.2f}x = {wall / flop_ratio:.2f} of the FLOP ratio "
              f"(target >= 0.8: {'met' if wall / flop_ratio >= 0.8 else 'NOT met'})")
    sp = t[("ir-csn-50", "plain")] / t[("ir-csn-50", "fast")]
    print(f"ir-CSN-50 train step fast vs plain: {sp:.2f}x (target >= 1.8x: "
          f"{'met' if sp >= 1.8 else 'NOT met'}; depthwise alone, fast-dw: "
          f"{t[('ir-csn-50', 'plain')] / t[('ir-csn-50', 'fast-dw')]:.2f}x)")


def inference_rows(repeat: int, quick: bool) -> None:
    """2. ir-CSN-152 inference, batch 1, fast vs plain at 8 (and 32) frames."""
    print("\nInference, ir-CSN-152, batch 1, eval + inference_mode")
    hdr = f"{'clip':12} {'variant':8} {'s/clip':>7} {'clips/s':>8} {'vs plain':>9}"
    print(hdr)
    print("-" * len(hdr))
    for fr in ((8,) if quick else (8, 32)):
        fns = {}
        for v in ("plain", "fast"):
            model, s = make("ir-csn-152", v, fr, 224, train=False)
            fns[v] = infer_fn(model, s, fr, 224)
        t = interleaved_best(fns, max(2, repeat - (1 if fr == 32 else 0)))
        for v, sec in t.items():
            print(f"{f'{fr}x224x224':12} {v:8} {sec:7.3f} {1 / sec:8.2f} {t['plain'] / sec:8.2f}x")
        del fns


if __name__ == "__main__":
    main()
