"""Video-level evaluation (paper §4.1 "Testing"): N centre-crop clips spread uniformly over each
video, softmax averaged over the clips -> video@1 / video@5; every clip also counts on its own
for clip loss and clip@1.

    python -m backend.evaluate CKPT DATA [--clips 10] [--json]

``DATA`` is a ``<class>/<video>`` folder (e.g. a synth ``test`` split) or a CSV list.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from backend.csn.perf import (PerfSettings, autocast, prepare_input, prepare_model,
                              recommended_settings)
from backend.datasets import DatasetError, VideoDataset, VideoItem, collate_skip, read_csv, scan_folder


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: str | torch.device = "cpu", *,
             settings: PerfSettings | None = None, distributed: bool = False) -> dict[str, float]:
    """Metrics over a loader of ``(clips (B, N, 3, T, S, S), labels (B,), n_bad)`` batches.

    Inputs and autocast follow ``settings`` (default: ``recommended_settings(device)``).
    With ``distributed`` the sums are all-reduced, so every rank returns the same figures for
    its shard of videos.
    """
    s_ = settings or recommended_settings(device, train=False)
    was_training = model.training
    model.eval()
    # loss_sum, clip_correct, clips, video_top1, video_top5, videos, bad
    s = torch.zeros(7, dtype=torch.float64)
    for x, y, bad in loader:
        s[6] += bad
        if x is None:
            continue
        b, n = x.shape[:2]
        x = prepare_input(x.flatten(0, 1), s_)
        y = y.to(x.device)
        with autocast(s_):
            logits = model(x)
        logits = logits.float()
        yc = y.repeat_interleave(n)
        s[0] += F.cross_entropy(logits, yc, reduction="sum").item()
        s[1] += (logits.argmax(1) == yc).sum().item()
        s[2] += b * n
        prob = logits.softmax(1).view(b, n, -1).mean(1)            # average the clip softmaxes
        top = prob.topk(min(5, prob.shape[1]), dim=1).indices
        s[3] += (top[:, 0] == y).sum().item()
        s[4] += (top == y[:, None]).any(1).sum().item()
        s[5] += b
    if distributed:
        dist.all_reduce(s)
    model.train(was_training)
    clips, videos = max(s[2].item(), 1.0), max(s[5].item(), 1.0)
    return {"loss": s[0].item() / clips, "clip_top1": s[1].item() / clips,
            "video_top1": s[3].item() / videos, "video_top5": s[4].item() / videos,
            "videos": s[5].item(), "bad_videos": s[6].item()}


def video_loader(items: list[VideoItem], *, frames: int, rate: int, size: int, num_clips: int,
                 videos_per_batch: int = 1, workers: int = 0, norm: Any = None,
                 cache=None) -> DataLoader:
    """``norm``: a backend.video.Norm, normally ``Norm.of(spec)`` (None: Kinetics, RGB);
    ``cache``: a backend.framecache.FrameCache."""
    ds = VideoDataset(items, frames=frames, rate=rate, size=size, num_clips=num_clips, norm=norm,
                      cache=cache)
    return DataLoader(ds, batch_size=videos_per_batch, shuffle=False, num_workers=workers,
                      collate_fn=collate_skip)


def clip_settings(spec: Any, ckpt: dict[str, Any], *, frames: int | None = None, rate: int | None = None,
                  size: int | None = None) -> tuple[int, int, int]:
    """``(frames, rate, size)``: the arguments if given, else the checkpoint's training config,
    else the spec's clip (rate 2)."""
    cfg = ckpt.get("config") or {}
    return (int(frames or cfg.get("frames") or spec.frames), int(rate or cfg.get("rate") or 2),
            int(size or cfg.get("size") or spec.height))


def evaluate_videos(model: nn.Module, items: list[VideoItem], *, frames: int, rate: int, size: int,
                    clips: int, device: torch.device = torch.device("cpu"), spec: Any = None) -> dict[str, float]:
    """:func:`evaluate` a model on videos, ``clips`` centre clips each (``backend.csn.perf``'s
    recommended settings for ``device``), normalised as ``spec`` (default: ``model.spec``)
    says: its input_mean / input_std / input_order."""
    from backend.video import Norm
    spec = spec if spec is not None else getattr(model, "spec", None)
    norm = Norm.of(spec) if spec is not None else None
    s = recommended_settings(device, train=False)
    return evaluate(prepare_model(model, device, train=False, settings=s),
                    video_loader(items, frames=frames, rate=rate, size=size, num_clips=clips, norm=norm),
                    device, settings=s)


def _items(data: Path, classes: list[str]) -> list[VideoItem]:
    if data.is_file():
        _, by_split = read_csv(data, classes=classes)
        return [it for s in by_split.values() for it in s]
    return scan_folder(data, classes)[1]


def main(argv: list[str] | None = None) -> int:
    from backend.checkpoint import CheckpointError, load_checkpoint
    from backend.csn.clipfit import check_clip
    p = argparse.ArgumentParser(prog="python -m backend.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("data", help="<class>/<video> folder or CSV list")
    p.add_argument("--clips", type=int, default=10, help="clips per video (paper: 10)")
    p.add_argument("--frames", type=int, help="default: the checkpoint's training config")
    p.add_argument("--rate", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1)))
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        model, spec, classes, ckpt = load_checkpoint(a.checkpoint)
        frames, rate, size = clip_settings(spec, ckpt, frames=a.frames, rate=a.rate, size=a.size)
        check_clip(spec, frames, size)       # a conv head's window must fit the clip
        items = _items(Path(a.data), classes)
        if not items:
            raise DatasetError(f"no videos in {a.data}")
        m = evaluate_videos(model, items, frames=frames, rate=rate, size=size, clips=a.clips, spec=spec)
        if not m["videos"]:
            raise DatasetError(f"none of the {len(items)} videos in {a.data} could be read")
    except (CheckpointError, DatasetError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(m))
    else:
        print(f"{int(m['videos'])} videos, {a.clips} clips each ({frames}x{size}x{size}, rate {rate})")
        for k in ("video_top1", "video_top5", "clip_top1", "loss"):
            print(f"  {k:<11} {m[k]:.4f}")
        if m["bad_videos"]:
            print(f"  skipped {int(m['bad_videos'])} unreadable video(s)")
    return 0


if __name__ == "__main__":
    from backend.cli import run_cli
    sys.exit(run_cli(main))
