"""Video-level evaluation (paper §4.1 "Testing"): N centre-crop clips spread uniformly over each
video, softmax averaged over the clips -> video@1 / video@5; every clip also counts on its own
for clip loss and clip@1.

    python -m backend.evaluate CKPT DATA [--protocol kinetics] [--per-class] [--out DIR] [--json]
    python -m backend.evaluate 'runs/ucf-s{split}/model.pt' data/ucf101 --split all

``DATA`` is a ``<class>/<video>`` folder (e.g. a synth ``test`` split), a dataset root with
``test/`` (else ``val/``), a CSV list (its test, else val, else all rows) or a UCF101 / HMDB51 /
SSv2 folder (its official test list, ``--split``). See ``backend.training.protocol``.
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
from backend.data.datasets import DatasetError, VideoItem, collate_skip, video_loader  # noqa: F401 - re-exported
from backend.training.checkpoint import clip_settings  # noqa: F401 - re-exported
from backend.training.protocol import PROTOCOLS, eval_items, predict_videos, run_held_out, summarise, write_report


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


def evaluate_videos(model: nn.Module, items: list[VideoItem], *, frames: int, rate: int, size: int,
                    clips: int, device: torch.device = torch.device("cpu"), spec: Any = None) -> dict[str, float]:
    """:func:`evaluate` a model on videos, ``clips`` centre clips each (``backend.csn.perf``'s
    recommended settings for ``device``), normalised as ``spec`` (default: ``model.spec``)
    says: its input_mean / input_std / input_order."""
    from backend.data.video import Norm
    spec = spec if spec is not None else getattr(model, "spec", None)
    norm = Norm.of(spec) if spec is not None else None
    s = recommended_settings(device, train=False)
    return evaluate(prepare_model(model, device, train=False, settings=s),
                    video_loader(items, frames=frames, rate=rate, size=size, num_clips=clips, norm=norm),
                    device, settings=s)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m backend.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint; with --split all, a path holding {split}")
    p.add_argument("data", nargs="?", help="<class>/<video> folder, CSV list, UCF101 / HMDB51 / "
                   "SSv2 folder (its official test list)")
    p.add_argument("--held-out-of", metavar="RUN_DIR", help="instead of DATA: the held-out set of "
                   "the run that wrote RUN_DIR/config.json")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), help="kinetics: 10 clips x 3 crops "
                   "(paper §5); centre: 10 clips, centre crop (§4.1)")
    p.add_argument("--clips", type=int, help="clips per video (default 10)")
    p.add_argument("--crops", type=int, choices=(1, 3), help="crops per clip (default 1)")
    p.add_argument("--split", default="1", choices=("1", "2", "3", "all"),
                   help="UCF101 / HMDB51 split; all: the mean over the 3 splits")
    p.add_argument("--per-class", action="store_true", help="print per-class accuracy")
    p.add_argument("--out", metavar="DIR", help="write metrics.json, per_class.csv, confusion.csv/.png")
    p.add_argument("--frames", type=int, help="default: the checkpoint's training config")
    p.add_argument("--rate", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1)))
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if (a.data is None) == (a.held_out_of is None):
        p.error("give DATA or --held-out-of RUN_DIR (one of them)")
    if a.protocol and (a.clips or a.crops):
        p.error(f"--protocol {a.protocol} sets --clips and --crops; give one or the other")
    if a.clips is not None and not 1 <= a.clips <= 100:
        p.error("--clips must be 1-100")
    return a


def _evaluate_one(ckpt_path: str, a: argparse.Namespace, split: int) -> dict[str, Any]:
    from backend.training.checkpoint import load_checkpoint
    from backend.csn.clipfit import check_clip
    model, spec, classes, ckpt = load_checkpoint(ckpt_path)
    frames, rate, size = clip_settings(spec, ckpt, frames=a.frames, rate=a.rate, size=a.size)
    check_clip(spec, frames, size)       # a conv head's window must fit the clip
    if a.held_out_of:
        cfg_file = Path(a.held_out_of) / "config.json"
        if not cfg_file.is_file():
            raise DatasetError(f"{cfg_file} does not exist (not a run directory)")
        items, source = run_held_out(json.loads(cfg_file.read_text(encoding="utf-8"))["config"], classes)
    else:
        items, source = eval_items(a.data, classes, split=split)
    if not items:
        raise DatasetError(f"no videos in {source}")
    clips, crops = PROTOCOLS[a.protocol] if a.protocol else (a.clips or 10, a.crops or 1)
    summary = summarise(predict_videos(model, items, classes, frames=frames, rate=rate, size=size,
                                       clips=clips, crops=crops, spec=spec))
    summary.update(checkpoint=str(ckpt_path), data=source, protocol=a.protocol, split=split,
                   frames=frames, rate=rate, size=size)
    return summary


def _print_summary(m: dict[str, Any], per_class: bool) -> None:
    print(f"{m['videos']} videos of {m['data']}; {m['clips']} clips x {m['crops']} crop(s) each "
          f"({m['frames']}x{m['size']}x{m['size']}, rate {m['rate']})")
    print(f"  {'clip@1':>8} {'video@1':>8} {'video@5':>8} {'mean class@1':>13}")
    print(f"  {m['clip_top1']:8.4f} {m['video_top1']:8.4f} {m['video_top5']:8.4f} {m['mean_class_top1']:13.4f}")
    if per_class:
        w = max(len(r["class"]) for r in m["per_class"])
        print(f"  {'class':<{w}} {'videos':>6} {'clip@1':>8} {'video@1':>8}")
        for r in m["per_class"]:
            f = (lambda v: "—" if v is None else f"{v:.4f}")
            print(f"  {r['class']:<{w}} {r['videos']:>6} {f(r['clip_top1']):>8} {f(r['video_top1']):>8}")
    if m["bad_videos"]:
        print(f"  skipped {m['bad_videos']} unreadable video(s): {', '.join(m['bad'][:5])}"
              + (" ..." if m["bad_videos"] > 5 else ""))


def three_split_mean(results: list[dict[str, Any]]) -> dict[str, float]:
    """The mean of each headline metric over the splits (the UCF101 / HMDB51 convention)."""
    keys = ("clip_top1", "video_top1", "video_top5", "mean_class_top1")
    return {k: sum(r[k] for r in results) / len(results) for k in keys}


def main(argv: list[str] | None = None) -> int:
    from backend.training.checkpoint import CheckpointError
    a = _args(argv)
    torch.set_num_threads(a.threads)
    splits = [1, 2, 3] if a.split == "all" else [int(a.split)]
    if a.split == "all" and "{split}" not in a.checkpoint:
        print("error: --split all needs one model per split (split K's training list holds the other "
              "splits' test videos): give a checkpoint path with {split}, e.g. runs/ucf-s{split}/model.pt",
              file=sys.stderr)
        return 1
    try:
        results = [_evaluate_one(a.checkpoint.replace("{split}", str(k)), a, k) for k in splits]
        for r in results:
            if a.out:
                write_report(r, Path(a.out) / f"split{r['split']}" if len(results) > 1 else a.out)
    except (CheckpointError, DatasetError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    mean = three_split_mean(results) if len(results) > 1 else None
    if a.json:
        keep = (lambda r: r if a.per_class else
                {k: v for k, v in r.items() if k not in ("confusion", "per_class", "classes")})
        print(json.dumps({"splits": [keep(r) for r in results], "mean": mean} if mean else keep(results[0])))
        return 0
    for r in results:
        if len(results) > 1:
            print(f"split {r['split']}:")
        _print_summary(r, a.per_class)
    if mean:
        print(f"mean over splits 1-3: clip@1 {mean['clip_top1']:.4f}  video@1 {mean['video_top1']:.4f}  "
              f"video@5 {mean['video_top5']:.4f}  mean class@1 {mean['mean_class_top1']:.4f}")
    return 0


if __name__ == "__main__":
    from backend.cli import run_cli
    sys.exit(run_cli(main))
