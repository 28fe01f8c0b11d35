"""Release a trained run as the shipped demo model (``backend/assets/motion_csn.pt`` + ``.json``).

    python -m backend.motion_model --run RUN_DIR --data DATA_DIR [--out backend/assets]
    python -m backend.motion_model --reproduce --run var/motion-run --data var/motion-data

Strips the run's newest checkpoint to weights + spec + classes + config (no optimiser, scheduler
or RNG state), evaluates it on ``DATA_DIR/test`` (the held-out split ``backend.synth`` writes)
with ``--clips`` centre clips per video, and writes ``motion_csn.json``: spec, classes, the test
metrics, the training time and clips/s read from the run's ``metrics.jsonl``, and the exact
commands that reproduce it. ``--reproduce`` (``make motion-model``) first generates the data and
trains, with exactly those commands.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, strip_checkpoint
from .data.datasets import DatasetError, read_classes, scan_folder
from .evaluate import clip_settings, evaluate_videos

ASSETS = Path(__file__).resolve().parent / "assets"

#: The recipe (the only copy of it; ``--reproduce`` runs it).
COMMANDS = [
    "python -m backend.synth --out {data} --per-class 250 --seed 1",
    "python -m backend.train --arch motion-ir-csn --data {data} --out {run} --epochs 40 "
    "--batch-size 8 --optimizer adamw --lr 0.001 --warmup-epochs 1 --frames 8 --rate 2 --size 48 "
    "--threads 2 --workers 2 --eval-clips 1 --seed 0 --no-progress",
    "python -m backend.motion_model --run {run} --data {data} --out backend/assets",
]


def run_summary(run: Path) -> dict[str, Any]:
    """Training time, clips/s and the last validation metrics from ``metrics.jsonl``."""
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    starts = [e for e in events if e["event"] == "start"]
    train_epochs = [e for e in events if e["event"] == "epoch" and e["split"] == "train"]
    val = [e for e in events if e["event"] == "epoch" and e["split"] == "val"]
    if not starts or not train_epochs:
        raise CheckpointError(f"{run}/metrics.jsonl has no finished epoch")
    cps = [e["metrics"]["clips_per_s"] for e in train_epochs if "clips_per_s" in e["metrics"]]
    return {
        "epochs": train_epochs[-1]["epoch"],
        "train_time_s": round(events[-1]["time"] - starts[0]["time"], 1),
        "train_clips_per_s": round(sum(cps) / len(cps), 1) if cps else None,
        "val": val[-1]["metrics"] if val else None,
        "device": starts[-1].get("device"),
    }


def _count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def release(run: str | Path, data: str | Path, out: str | Path = ASSETS, *, clips: int = 10,
            threads: int = 2) -> dict[str, Any]:
    """Write ``out/motion_csn.pt`` and ``out/motion_csn.json``; returns the JSON dict."""
    run, data, out = Path(run), Path(data), Path(out)
    src = latest_checkpoint(run)
    if src is None:
        raise CheckpointError(f"no checkpoint in {run}")
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    pt = out / "motion_csn.pt"
    strip_checkpoint(src, pt)
    model, spec, classes, ckpt = load_checkpoint(pt)
    if read_classes(data / "classes.txt") != classes:
        raise DatasetError(f"{data}/classes.txt does not list the model's classes {classes}")
    _, items = scan_folder(data / "test", classes)
    frames, rate, size = clip_settings(spec, ckpt)
    cfg = ckpt.get("config") or {}
    t0 = time.perf_counter()
    m = evaluate_videos(model, items, frames=frames, rate=rate, size=size, clips=clips)
    meta = {
        "model": pt.name,
        "spec": ckpt["spec"],
        "classes": classes,
        "test": {**m, "clips_per_video": clips, "split": "test", "eval_time_s": round(time.perf_counter() - t0, 1)},
        **run_summary(run),
        "data": {"command": COMMANDS[0].format(data="var/motion-data"), "train_videos": _count(data / "train"),
                 "val_videos": _count(data / "val"), "test_videos": len(items)},
        "train_config": {k: cfg.get(k) for k in ("optimizer", "lr", "epochs", "batch_size", "frames", "rate",
                                                   "size", "weight_decay", "warmup_epochs", "seed")},
        "commands": [c.format(data="var/motion-data", run="var/motion-run") for c in COMMANDS],
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out / "motion_csn.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend.motion_model", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="training run directory")
    p.add_argument("--data", required=True, help="backend.synth folder (its test split is scored)")
    p.add_argument("--out", default=str(ASSETS))
    p.add_argument("--clips", type=int, default=10, help="clips per test video (paper: 10)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reproduce", action="store_true", help="generate the data and train first")
    a = p.parse_args(argv)
    if a.reproduce:
        for cmd in COMMANDS[:2]:
            args = shlex.split(cmd.format(data=shlex.quote(a.data), run=shlex.quote(a.run)))
            print("+", " ".join(args), flush=True)
            if subprocess.run([sys.executable, *args[1:]]).returncode:
                return 1
    try:
        meta = release(a.run, a.data, a.out, clips=a.clips, threads=a.threads)
    except (CheckpointError, DatasetError, OSError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    t = meta["test"]
    print(f"wrote {a.out}/motion_csn.pt: test video@1 {t['video_top1']:.3f}, video@5 {t['video_top5']:.3f} "
          f"({t['videos']:.0f} videos x {t['clips_per_video']} clips); trained {meta['train_time_s']:.0f} s, "
          f"{meta['train_clips_per_s']} clips/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
