"""The ir-CSN-50 train-step variants and their interleaved timing (shared with bench_step.py),
and bench_step.py's contended rows: a second busy training process on the same cores.

For each OpenMP wait policy (read by libgomp when torch loads, so each runs in a fresh child
process): ir-CSN-50 train step, fast and plain builds, timed alone ("quiet") and while another
2-thread training process (same policy) runs ("contended"); and the profiler's overhead
(``backend.profile``: hooked step / plain step - 1). Ratios within one run are what to read:
the machine is shared.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from backend.csn import build_model, preset  # noqa: E402
from backend.csn.ops import set_depthwise_impl  # noqa: E402
from backend.csn.perf import (PerfSettings, prepare_input, prepare_model,  # noqa: E402
                              recommended_settings)

POLICIES = ("ACTIVE", "PASSIVE")


def make(name: str, variant: str, frames: int, size: int, train: bool):
    """(model, settings) for one variant: plain (nn.Conv3d, contiguous), plain-cl,
    fast-contig, fast-dw (fast depthwise, plain pointwise), fast-bf16 or fast (the
    recommended settings)."""
    spec = preset(name, frames=frames, height=size, width=size)
    set_depthwise_impl("native" if variant.startswith("plain") else "fast")
    try:
        torch.manual_seed(0)
        model = build_model(spec)
    finally:
        set_depthwise_impl(None)
    rec = recommended_settings("cpu", train=train)
    if variant == "plain":
        s = PerfSettings("cpu", channels_last=False, depthwise="native")
    elif variant == "plain-cl":
        s = PerfSettings("cpu", channels_last=True, depthwise="native")
    elif variant == "fast-contig":
        s = PerfSettings("cpu", channels_last=False)
    elif variant == "fast-dw":                       # fast depthwise, plain 1x1x1 convs
        s = replace(rec, pointwise="native")
    elif variant == "fast-bf16":
        s = PerfSettings("cpu", channels_last=rec.channels_last, autocast_dtype=torch.bfloat16)
    else:
        s = rec
    return prepare_model(model, "cpu", train=train, settings=s), s


def train_step_fn(model: nn.Module, s: PerfSettings, batch: int, frames: int, size: int):
    """One SGD train step on a fixed random batch, as a function."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = prepare_input(torch.randn(batch, 3, frames, size, size), s)
    y = torch.randint(0, 400, (batch,))
    ctx = (torch.autocast("cpu", dtype=s.autocast_dtype) if s.autocast_dtype
           else contextlib.nullcontext())

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with ctx:
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def interleaved_best(fns: dict[str, object], repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` seconds per function, the repetitions interleaved across them."""
    for f in fns.values():  # warm-up: numba compile, oneDNN primitive cache, allocator
        f()
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _env(policy: str, threads: int) -> dict[str, str]:
    return dict(os.environ, OMP_WAIT_POLICY=policy, OMP_NUM_THREADS=str(threads),
                MKL_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
                PYTHONPATH=str(ROOT))


def busy(threads: int) -> None:
    """Train ResNet3D-26 at 8x112x112, batch 2, until killed (the other tenant)."""
    torch.set_num_threads(threads)
    model = build_model(preset("resnet3d-26", frames=8, height=112, width=112))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(2, 3, 8, 112, 112), torch.randint(0, 400, (2,))
    while True:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def child(threads: int, batch: int, repeat: int, policy: str) -> dict:
    """Time fast / plain ir-CSN-50 quiet, then contended; the profiler overhead (quiet)."""
    torch.set_num_threads(threads)
    fns = {v: train_step_fn(*make("ir-csn-50", v, 8, 112, True), batch, 8, 112)
           for v in ("plain", "fast")}
    out = {"quiet": interleaved_best(fns, repeat)}
    other = subprocess.Popen([sys.executable, __file__, "--busy", str(threads)],
                             env=_env(policy, threads), stdout=subprocess.DEVNULL)
    try:
        time.sleep(3)                      # let it build and start training
        out["contended"] = interleaved_best(fns, repeat)
        if other.poll() is not None:       # it died: these were not contended timings
            raise RuntimeError(f"the busy process exited ({other.returncode})")
    finally:
        other.kill()
        other.wait()
    from backend.profile import ProfileConfig, profile  # after the timings: not loaded during them
    rep = profile(preset("ir-csn-50", frames=8, height=112, width=112),
                  ProfileConfig(batch=batch, threads=threads, repeats=repeat))
    out["profiler_overhead"] = rep.totals["overhead"]
    out["profile_gap"] = rep.totals["gap"]
    return out


def contended_rows(threads: int, batch: int, repeat: int) -> None:
    """Run one child per policy and print the quiet / contended table."""
    results = {}
    for policy in POLICIES:
        r = subprocess.run([sys.executable, __file__, "--child", str(threads), str(batch),
                            str(repeat), policy], env=_env(policy, threads), capture_output=True,
                           text=True, timeout=1800)
        if r.returncode != 0:
            print(f"{policy}: child failed: {r.stderr.strip().splitlines()[-1:]}")
            continue
        results[policy] = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"\nContended: ir-CSN-50 train step, batch {batch}, 8x112x112, {threads} threads, "
          f"alone vs beside a {threads}-thread ResNet3D-26 training process (same policy)")
    hdr = (f"{'OMP_WAIT_POLICY':16}{'variant':8}{'quiet s':>9}{'contended s':>13}"
           f"{'contended/quiet':>17}")
    print(hdr + "\n" + "-" * len(hdr))
    for policy, res in results.items():
        for v in ("plain", "fast"):
            q, c = res["quiet"][v], res["contended"][v]
            print(f"{policy:16}{v:8}{q:9.3f}{c:13.3f}{c / q:16.2f}x")
        print(f"{'':16}fast vs plain: quiet {res['quiet']['plain'] / res['quiet']['fast']:.2f}x, "
              f"contended {res['contended']['plain'] / res['contended']['fast']:.2f}x; "
              f"profiler overhead {100 * res['profiler_overhead']:+.1f}%, unattributed "
              f"{100 * res['profile_gap']:+.1f}%")


if __name__ == "__main__":
    if sys.argv[1] == "--busy":
        busy(int(sys.argv[2]))
    elif sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])))
