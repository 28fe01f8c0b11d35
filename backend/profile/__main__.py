"""Profile a preset or spec file on this machine.

    python -m backend.profile ir-csn-50 --batch 4 --frames 8 --size 112 --mode train
    python -m backend.profile my_spec.json --device cuda --threads 2 --json
    python -m backend.profile ir-csn-152 --memory 24GB --no-compare     # max batch for 24 GB

Per counter row: multiply-adds, forward / backward ms, share of time, activation memory kept
for backward, arithmetic intensity, attained GFLOP/s and bound; stage totals; the sum of rows
against the measured whole step; the memory model and the largest batch that fits; the ratio
table against the ResNet3D of the same depth (skip with ``--no-compare``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from backend.count import load_spec
from backend.csn import SpecError

from .render import render_compare, render_profile


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m backend.profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", help="preset name or spec JSON file")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, help="clip length T (default: the spec's)")
    ap.add_argument("--size", type=int, help="crop size H = W (default: the spec's)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:I")
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=3, help="timed steps; medians are reported")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--layout", choices=["channels_last", "contiguous"], default="channels_last")
    ap.add_argument("--optimizer", choices=["sgd", "sgd-nomomentum", "adamw"], default="sgd")
    ap.add_argument("--memory", help="memory to fit, e.g. 24GB (default: the device's)")
    ap.add_argument("--baseline", help="baseline preset (default: the ResNet3D of the same depth)")
    ap.add_argument("--no-compare", action="store_true", help="skip the baseline ratio table")
    ap.add_argument("--remeasure-roof", action="store_true",
                    help="measure the roofline again (it is cached per machine)")
    ap.add_argument("--json", action="store_true")
    return ap


def _device_memory(device: str) -> int:
    import os

    import torch
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _config(args):
    import torch

    from .core import ProfileConfig
    if args.device != "cpu" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        raise ValueError("--device: not available here (cpu, or cuda with a GPU)")
    cfg = ProfileConfig(batch=args.batch, device=args.device, mode=args.mode, threads=args.threads,
                        repeats=args.repeats, dtype=args.dtype,
                        channels_last=args.layout == "channels_last", optimizer=args.optimizer)
    cfg.check()
    if cfg.dtype == "bf16":
        from backend.csn.perf import check_amp
        check_amp(cfg.device, "bf16")      # refuses a CPU that would run a slow fallback
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from .memory import max_batch, memory_model, parse_bytes
        spec = load_spec(args.spec)
        changes = {k: v for k, v in (("frames", args.frames), ("height", args.size),
                                     ("width", args.size)) if v is not None}
        spec = replace(spec, **changes)
        spec.validate()
        cfg = _config(args)
        budget = parse_bytes(args.memory) if args.memory else _device_memory(args.device)
        need = memory_model(spec, cfg.batch, cfg.optimizer, cfg.device).peak_bytes
        if need > _device_memory(args.device):
            raise ValueError(f"--batch/--size: the predicted training peak {need / 1e9:.1f} GB "
                             "exceeds this device's memory")
    except (SpecError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch

    from .compare import compare
    from .core import profile
    from .roofline import roof
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    the_roof = roof(torch.device(cfg.device), remeasure=args.remeasure_roof)
    fits = {"memory_bytes": budget, "max_batch": max_batch(spec, budget, cfg.optimizer, cfg.device)}
    if args.no_compare:
        rep = profile(spec, cfg, the_roof=the_roof)
        out = {"profile": rep.to_dict(), "fits": fits}
        text = render_profile(rep, fits)
    else:
        res = compare(spec, cfg, args.baseline, the_roof=the_roof)
        main_rep = res["design"] if cfg.mode == "train" else res["design_infer"]
        out = {"profile": main_rep.to_dict(), "fits": fits, "baseline": res["baseline"],
               "ratios": res["ratios"]}
        text = render_profile(main_rep, fits) + "\n\n" + render_compare(res)
    print(json.dumps(out) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
