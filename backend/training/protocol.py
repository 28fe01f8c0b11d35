"""The paper's test protocols, per video, with per-class accuracy and a confusion matrix.

``kinetics`` (paper §5, the 30-crop test of [35]): 10 clips uniformly spread over the video x
3 crops (left / centre / right of the short side scaled to 256/224 of the crop); ``centre``
(§4.1): 10 clips, centre crop. video@k: top-k of the softmax averaged over every view of a
video; clip@1: top-1 of each single clip's centre crop (the §4.1 definition), averaged over
clips; mean class accuracy: video@1 averaged over the classes that have videos.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backend.data.datasets import DatasetError, VideoItem, load_splits, read_csv, scan_folder, video_loader

PROTOCOLS = {"kinetics": (10, 3), "centre": (10, 1)}   # name -> (clips, crops)
MAX_LABELLED = 60                                      # class names drawn on the PNG up to this
MAX_COUNTED = 25                                       # counts written in the cells up to this


@dataclass
class Predictions:
    """Per video: label, softmax averaged over its views, centre-clip hits; bad videos listed."""

    classes: list[str]
    clips: int
    crops: int
    labels: list[int] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    clip_hits: list[int] = field(default_factory=list)
    loss_sum: float = 0.0
    paths: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


@torch.no_grad()
def predict_videos(model: torch.nn.Module, items: list[VideoItem], classes: list[str], *,
                   frames: int, rate: int, size: int, clips: int, crops: int,
                   device: torch.device = torch.device("cpu"), spec: Any = None) -> Predictions:
    """Run ``model`` over every view of every video (one video at a time, so a bad file is
    named, not fatal)."""
    from backend.csn.perf import autocast, prepare_input, prepare_model, recommended_settings
    from backend.data.video import Norm
    spec = spec if spec is not None else getattr(model, "spec", None)
    s = recommended_settings(device, train=False)
    model = prepare_model(model, device, train=False, settings=s)
    model.eval()
    loader = video_loader(items, frames=frames, rate=rate, size=size, num_clips=clips, crops=crops,
                          norm=Norm.of(spec) if spec is not None else None)
    out = Predictions(classes=list(classes), clips=clips, crops=crops)
    for item, (x, y, _) in zip(items, loader):
        if x is None:
            out.bad.append(item.path)
            continue
        with autocast(s):
            logits = model(prepare_input(x.flatten(0, 1), s)).float().cpu()
        label = int(y[0])
        out.loss_sum += F.cross_entropy(logits, torch.full((len(logits),), label), reduction="sum").item()
        centre = logits.view(-1, crops, logits.shape[1])[:, crops // 2]
        out.clip_hits.append(int((centre.argmax(1) == label).sum()))
        out.probs.append(logits.softmax(1).mean(0).numpy())
        out.labels.append(label)
        out.paths.append(item.path)
    return out


def summarise(p: Predictions) -> dict[str, Any]:
    """clip@1, video@1/@5, mean class accuracy, per-class rows and the confusion matrix
    (rows: true class, columns: predicted), as plain JSON-able values."""
    k, n = len(p.classes), len(p.labels)
    if not n:
        raise DatasetError(f"none of the {len(p.bad)} videos could be read")
    probs, labels = np.stack(p.probs), np.asarray(p.labels)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :min(5, k)]
    pred = top[:, 0]
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    hits = np.asarray(p.clip_hits)
    per_class = []
    for c in range(k):
        sel = labels == c
        v = int(sel.sum())
        per_class.append({"class": p.classes[c], "videos": v,
                          "video_top1": float((pred[sel] == c).mean()) if v else None,
                          "clip_top1": float(hits[sel].sum() / (v * p.clips)) if v else None})
    present = [r["video_top1"] for r in per_class if r["videos"]]
    return {"videos": n, "bad_videos": len(p.bad), "clips": p.clips, "crops": p.crops,
            "clip_top1": float(hits.sum() / (n * p.clips)),
            "video_top1": float((pred == labels).mean()),
            "video_top5": float((top == labels[:, None]).any(1).mean()),
            "mean_class_top1": float(np.mean(present)),
            "loss": p.loss_sum / (n * p.clips * p.crops),
            "per_class": per_class, "confusion": confusion.tolist(), "classes": p.classes,
            "bad": p.bad}


def write_report(summary: dict[str, Any], out: str | os.PathLike) -> list[Path]:
    """``per_class.csv``, ``confusion.csv``, ``confusion.png`` and, last and atomically,
    ``metrics.json`` in ``out`` (so its presence means the report is complete)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "per_class.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["class", "videos", "video_top1", "clip_top1"])
        for r in summary["per_class"]:
            w.writerow([r["class"], r["videos"], r["video_top1"], r["clip_top1"]])
    with (out / "confusion.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *summary["classes"]])
        for name, row in zip(summary["classes"], summary["confusion"]):
            w.writerow([name, *row])
    confusion_png(summary, out / "confusion.png")
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    os.replace(tmp, out / "metrics.json")
    return [out / n for n in ("metrics.json", "per_class.csv", "confusion.csv", "confusion.png")]


def confusion_png(summary: dict[str, Any], path: Path) -> None:
    """Row-normalised confusion matrix (each true class sums to 1) with matplotlib (Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = np.asarray(summary["confusion"], dtype=float)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(m)
    side = min(4 + 0.35 * k, 16)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class's videos")
    if k <= MAX_COUNTED:     # the video counts in the cells while they are legible
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, int(v), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    if k <= MAX_LABELLED:
        ax.set_xticks(range(k), summary["classes"], rotation=90, fontsize=8)
        ax.set_yticks(range(k), summary["classes"], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"video@1 {summary['video_top1']:.1%} · mean class {summary['mean_class_top1']:.1%} "
                 f"({summary['videos']} videos)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- which videos are held out ---------------------------------------------------------------------
def eval_items(data: str | os.PathLike, classes: list[str], *, split: int = 1,
               video_root: str | os.PathLike | None = None) -> tuple[list[VideoItem], str]:
    """The videos ``backend.evaluate DATA`` scores, labelled in the checkpoint's ``classes``:
    a standard layout's official test list, a CSV's test (else val) rows or all its rows when
    it has no split column, ``DATA/test`` (else ``DATA/val``) when present, else DATA's class
    folders. Returns (items, a description)."""
    from backend.data.layouts import detect_layout, load_layout
    data = Path(data)
    if not data.exists():
        raise DatasetError(f"data path {data} does not exist")
    layout = detect_layout(data)
    if layout is not None:
        s = load_layout(data, layout, split=split, video_root=video_root)
        return relabel(s.val, s.classes, classes), f"held-out list of {s.source}"
    if split != 1:
        raise DatasetError(f"split {split}: only UCF101 and HMDB51 folders have splits 2 and 3")
    if data.is_file():
        _, by_split = read_csv(data, video_root, classes)
        for name in ("test", "val", "all"):
            if name in by_split:
                return by_split[name], f"CSV {data}, {name} rows"
        raise DatasetError(f"{data}: no test, val or unsplit rows to evaluate")
    for name in ("test", "val"):
        if (data / name).is_dir() and (data / "train").is_dir():
            return scan_folder(data / name, classes)[1], f"folders {data}/{name}"
    return scan_folder(data, classes)[1], f"folders {data}"


def run_held_out(config: dict[str, Any], classes: list[str]) -> tuple[list[VideoItem], str]:
    """A run's held-out videos from its ``config.json``: a ``test`` split or official test list
    when the data has one, else exactly the validation split the trainer used."""
    from backend.data.layouts import detect_layout
    data = Path(config.get("data") or "")
    if not config.get("val_data") and data.is_dir() and (
            detect_layout(data) or ((data / "test").is_dir() and (data / "train").is_dir())):
        return eval_items(data, classes, split=int(config.get("split") or 1),
                          video_root=config.get("video_root"))
    s = load_splits(data, val_data=config.get("val_data"), val_fraction=float(config.get("val_fraction", 0.1)),
                    seed=int(config.get("seed", 0)), video_root=config.get("video_root"),
                    split=int(config.get("split") or 1))
    if not s.val:
        raise DatasetError(f"the run held out no videos ({s.source})")
    return relabel(s.val, s.classes, classes), f"validation split of {s.source}"


def relabel(items: list[VideoItem], data_classes: list[str], model_classes: list[str]) -> list[VideoItem]:
    """Items labelled in the data's class list -> the model's; a class the model lacks is an error."""
    if data_classes == model_classes:
        return items
    index = {c: i for i, c in enumerate(model_classes)}
    missing = [c for c in data_classes if c not in index]
    if missing:
        raise DatasetError(f"{len(missing)} of the data's {len(data_classes)} classes are not among "
                           f"the checkpoint's {len(model_classes)} classes")
    return [VideoItem(it.path, index[data_classes[it.label]]) for it in items]
