"""Training throughput: is decoding the bottleneck? Ratios within one run, no absolute claims.

Measures, on a small synthetic dataset (``backend.synth``) and a small ir-CSN:

1. decode-only: clips/s out of the training DataLoader (PyAV decode + jitter), workers=0 / 2;
2. step-only: clips/s of forward + backward + SGD step on clips already in memory;
3. end to end: clips/s of ``backend.train.train`` decoding every clip (workers=0 / 2) and
   cutting clips from the in-memory frame cache (``--cache-mb``, workers=0 / 1).

The target: end to end with the frame cache >= 0.9 x the train step alone, at the
study's clip (8x32x32, ``python bench/bench_train.py --size 32``).

On a machine shared with other work the figures move a lot between runs; compare within one.

    python bench/bench_train.py [--steps 6] [--batch 8] [--size 32] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from backend.csn import ArchSpec, build_model  # noqa: E402
from backend.csn.perf import set_threads  # noqa: E402
from backend.data.datasets import ClipDataset, SeededSampler, collate_skip, load_splits  # noqa: E402
from backend.synth import generate  # noqa: E402
from backend.train import TrainConfig, train  # noqa: E402

SPEC = {"name": "bench-ir-csn-26", "stem_width": 16, "num_classes": 8, "pool1": False, "stages": [
    {"blocks": 2, "width": w, "inner": w, "block": "ir"} for w in (16, 32, 64, 128)]}


def loader_rate(items, args, workers: int) -> float:
    ds = ClipDataset(items, frames=8, rate=2, size=args.size)
    kw = dict(persistent_workers=True, prefetch_factor=2) if workers else {}
    dl = DataLoader(ds, batch_size=args.batch, sampler=SeededSampler(ds, seed=0),
                    num_workers=workers, collate_fn=collate_skip, **kw)
    it = iter(dl)
    next(it)  # worker start-up is not throughput
    t, n = time.perf_counter(), 0
    for _ in range(args.steps):
        x, _, _ = next(it)
        n += x.shape[0]
    return n / (time.perf_counter() - t)


def step_rate(args) -> float:
    model = build_model(ArchSpec.from_dict(SPEC)).to(memory_format=torch.channels_last_3d)
    set_threads(args.threads)  # as the trainer does: numba's kernels too
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, 8, args.size, args.size).contiguous(
        memory_format=torch.channels_last_3d)
    y = torch.randint(0, 8, (args.batch,))
    for i in range(args.steps + 1):
        if i == 1:
            t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return args.steps * args.batch / (time.perf_counter() - t)


def train_rate(data: Path, spec: Path, out: Path, args, workers: int, cache_mb: float = 0) -> float:
    ev: list[dict] = []
    train(TrainConfig(arch=str(spec), data=str(data), out=str(out), epochs=1,
                      batch_size=args.batch, size=args.size, threads=args.threads,
                      workers=workers, max_steps_per_epoch=args.steps, eval_clips=1,
                      cache_mb=cache_mb, tensorboard=False, progress=False), callback=ev.append)
    return next(e["metrics"]["clips_per_s"] for e in ev if e["event"] == "epoch")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # enough training videos for steps + 1 batches (80% of each class is train)
        per_class = max(4, math.ceil((args.steps + 1) * args.batch / 8 / 0.8) + 1)
        generate(tmp / "data", per_class=per_class, seed=0, size=max(32, args.size), frames=32,
                 splits={"train": 0.8, "val": 0.2})
        (tmp / "spec.json").write_text(json.dumps(SPEC))
        items = load_splits(tmp / "data").train
        step_rate(args), loader_rate(items, args, 0)  # warm-up: JIT, first decodes, page cache
        rows = {
            "train step only (clips in memory)": step_rate(args),
            "decode-only loader, workers=0": loader_rate(items, args, 0),
            "decode-only loader, workers=2": loader_rate(items, args, 2),
            "train() end to end, workers=0": train_rate(tmp / "data", tmp / "spec.json",
                                                        tmp / "r0", args, 0),
            "train() end to end, workers=2": train_rate(tmp / "data", tmp / "spec.json",
                                                        tmp / "r2", args, 2),
            "train() frame cache, workers=0": train_rate(tmp / "data", tmp / "spec.json",
                                                         tmp / "c0", args, 0, cache_mb=1024),
            "train() frame cache, workers=1": train_rate(tmp / "data", tmp / "spec.json",
                                                         tmp / "c1", args, 1, cache_mb=1024),
        }
    base = rows["train() end to end, workers=0"]
    print(f"bench_train: 8x{args.size}x{args.size} clips, batch {args.batch}, "
          f"{args.threads} torch thread(s), {os.cpu_count()} CPUs")
    for name, r in rows.items():
        print(f"  {name:<36} {r:8.1f} clips/s   x{r / base:5.2f} vs end-to-end workers=0")
    step = rows["train step only (clips in memory)"]
    best_cached = max(rows["train() frame cache, workers=0"], rows["train() frame cache, workers=1"])
    best_decoded = max(rows["train() end to end, workers=0"], rows["train() end to end, workers=2"])
    print(f"  cached/decoding end-to-end ratio: {best_cached / best_decoded:.2f}; "
          f"cached end-to-end / step alone: {best_cached / step:.2f} (target >= 0.9)")
    ratio = rows["decode-only loader, workers=0"] / rows["train step only (clips in memory)"]
    print(f"  decode/step throughput ratio: {ratio:.2f} "
          f"({'decoding is NOT' if ratio > 1 else 'decoding IS'} the bottleneck with workers=0)")


if __name__ == "__main__":
    main()
