"""Extract one feature vector per video with a checkpoint: for another model, a probe, retrieval.

    python -m backend.features CKPT VIDEOS|CSV --layer pool|conv5|conv4 --clips 10 --crops 3 --out feats.npy

Input: a folder (every video under it; a video's label is its folder's name, none for videos
directly in VIDEOS; a first folder named train/val/test is its split) or a CSV list
(``path,label[,split]`` or a Kinetics CSV, as ``backend.train --data``).

Layers: ``pool`` is the vector the classifier reads (the head's pooling of conv5; for a conv
head, also averaged over its positions); ``conv5`` / ``conv4`` are that stage's output averaged
over time and space (for an fc-head model ``conv5`` equals ``pool``). Each video's vector is
the mean over its ``clips x crops`` test clips (paper §4.1 sampling, ``backend.inference.predictor``).

Output: ``OUT`` (``.npy``, float32, one row per video), ``OUT.index.csv`` (row, path, label,
split: row i of the matrix), ``OUT.bad.csv`` (videos that could not be read, and why: listed,
not fatal) and ``OUT.meta.json`` (checkpoint, layer, clips, crops, clip, dimension).
Interrupted? Run the same command again: rows already written (and videos already listed as
bad) are skipped; options that differ from the interrupted run's are refused.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

LAYERS = ("pool", "conv5", "conv4")
MAX_VIDEOS = 2_000_000
SPLIT_NAMES = ("train", "val", "test")
Report = Callable[[str], None]


class FeatureError(ValueError):
    """Bad input or an output that cannot be resumed; the message is for people."""


@dataclass(frozen=True)
class Entry:
    path: str
    label: str = ""
    split: str = ""


def list_videos(source: str | os.PathLike) -> list[Entry]:
    """The videos of a folder or a CSV list, in a stable order."""
    from backend.data.datasets import VIDEO_EXTS, DatasetError, read_csv

    src = Path(source)
    if src.is_file() and src.suffix.lower() == ".csv":
        try:
            classes, splits = read_csv(src)
        except DatasetError as e:
            raise FeatureError(str(e)) from None
        return [Entry(it.path, classes[it.label], "" if split == "all" else split)
                for split, items in splits.items() for it in items]
    if not src.is_dir():
        raise FeatureError(f"VIDEOS: {src} is neither a folder nor a .csv list")
    out = []
    for p in sorted(src.rglob("*")):
        if p.suffix.lower() in VIDEO_EXTS and p.is_file():
            parts = p.relative_to(src).parts
            label = parts[-2] if len(parts) >= 2 else ""
            split = parts[0] if len(parts) >= 3 and parts[0] in SPLIT_NAMES else ""
            out.append(Entry(str(p), label, split))
        if len(out) > MAX_VIDEOS:
            raise FeatureError(f"VIDEOS: more than {MAX_VIDEOS} videos")
    if not out:
        raise FeatureError(f"VIDEOS: no video files under {src}")
    return out


def video_features(pr, video: str, layer: str, clips: int, crops: int) -> np.ndarray:
    """float32 (D,): the layer's vector averaged over the video's clips x crops."""
    model = pr.model
    got: list[torch.Tensor] = []

    def keep(t: torch.Tensor) -> None:
        got.append(t.float().flatten(2).mean(2) if t.dim() > 2 else t.float())
    if layer == "pool":
        hook = model.head.fc.register_forward_pre_hook(lambda m, args: keep(args[0]))
    else:
        hook = getattr(model, layer).register_forward_hook(lambda m, args, out: keep(out))
    try:
        pr.probs(pr.clips(video, clips, crops), batch=1 if pr.big else 4)
    finally:
        hook.remove()
    return torch.cat(got).mean(0).cpu().numpy().astype(np.float32)


class Store:
    """The output files; rows appended one video at a time, so an interruption loses at most
    the video being read."""

    def __init__(self, out: str | os.PathLike, meta: dict):
        self.out = Path(out)
        if self.out.suffix != ".npy":
            raise FeatureError("--out: the matrix file must end in .npy")
        stem = str(self.out)[:-4]
        self.index, self.bad = Path(stem + ".index.csv"), Path(stem + ".bad.csv")
        self.meta_path, self.partial = Path(stem + ".meta.json"), Path(stem + ".partial")
        self.meta = meta
        self.done, self.failed = self._resume()

    def _resume(self) -> tuple[list[str], set[str]]:
        if not self.meta_path.exists():
            for p in (self.index, self.bad, self.partial):
                p.unlink(missing_ok=True)
            return [], set()
        old = json.loads(self.meta_path.read_text(encoding="utf-8"))
        for key in ("checkpoint", "layer", "clips", "crops", "frames", "rate", "size"):
            if old.get(key) != self.meta[key]:
                name = "CKPT" if key == "checkpoint" else f"--{key}"
                raise FeatureError(f"{name}: {self.meta[key]!r} differs from the interrupted "
                                   f"run's {old.get(key)!r} in {self.meta_path.name}; use another "
                                   "--out or delete its files")
        self.meta["dim"] = old.get("dim")
        rows = list(csv.DictReader(self.index.open(encoding="utf-8"))) if self.index.exists() else []
        if not self.partial.exists() and self.out.exists():   # finished before: extend it
            np.load(self.out).astype(np.float32).tofile(self.partial)
        dim = self.meta["dim"] or 0
        have = self.partial.stat().st_size // (4 * dim) if dim and self.partial.exists() else 0
        if have < len(rows):
            raise FeatureError(f"{self.partial.name} holds {have} rows but {self.index.name} "
                               f"lists {len(rows)}; delete the output files and start again")
        if dim:   # a row written without its index line (interrupted between the two)
            with self.partial.open("r+b") as f:
                f.truncate(len(rows) * 4 * dim)
        failed = {r["path"] for r in csv.DictReader(self.bad.open(encoding="utf-8"))} if self.bad.exists() else set()
        return [r["path"] for r in rows], failed

    def add(self, entry: Entry, vec: np.ndarray) -> None:
        if self.meta.get("dim") is None:
            self.meta["dim"] = int(vec.size)
            self._write_meta(complete=False)
        with self.partial.open("ab") as f:
            f.write(vec.astype(np.float32).tobytes())
            f.flush()
            os.fsync(f.fileno())
        self._append(self.index, ["row", "path", "label", "split"],
                     [len(self.done), entry.path, entry.label, entry.split])
        self.done.append(entry.path)

    def add_bad(self, entry: Entry, why: str) -> None:
        if not self.meta_path.exists():
            self._write_meta(complete=False)
        self._append(self.bad, ["path", "error"], [entry.path, why])
        self.failed.add(entry.path)

    def finish(self) -> np.ndarray:
        dim = self.meta.get("dim") or 0
        data = (np.fromfile(self.partial, np.float32).reshape(-1, dim) if dim and self.partial.exists()
                else np.zeros((0, dim), np.float32))
        tmp = self.out.with_name(self.out.name + ".tmp.npy")
        np.save(tmp, data)
        os.replace(tmp, self.out)
        self.partial.unlink(missing_ok=True)
        self._write_meta(complete=True, rows=len(data))
        return data

    def _write_meta(self, **extra) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.meta_path.write_text(json.dumps({**self.meta, **extra}, indent=1), encoding="utf-8")

    @staticmethod
    def _append(path: Path, header: list[str], row: list) -> None:
        new = not path.exists()
        with path.open("a", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            if new:
                w.writerow(header)
            w.writerow(row)


def extract(checkpoint: str, source: str, out: str, *, layer: str = "pool", clips: int = 10,
            crops: int = 1, device: str = "cpu", report: Report | None = None) -> dict:
    """Write the features of every video of ``source`` (resuming ``out``); returns a summary."""
    from backend.inference.predictor import Predictor
    from backend.data.video import VideoError

    if layer not in LAYERS:
        raise FeatureError(f"--layer: one of {', '.join(LAYERS)}")
    if not 1 <= clips <= 30 or crops not in (1, 3):
        raise FeatureError("--clips must be 1 .. 30 and --crops 1 or 3")
    entries = list_videos(source)
    pr = Predictor(checkpoint, device=device)
    store = Store(out, {"checkpoint": str(Path(checkpoint).resolve()), "layer": layer,
                        "clips": clips, "crops": crops, "frames": pr.frames, "rate": pr.rate,
                        "size": pr.size, "classes": pr.classes, "dim": None})
    seen = set(store.done) | store.failed
    todo = [e for e in entries if e.path not in seen]
    say = report or (lambda text: None)
    say(f"{len(entries)} videos: {len(entries) - len(todo)} already done, {len(todo)} to go")
    for i, entry in enumerate(todo, start=1):
        try:
            vec = video_features(pr, entry.path, layer, clips, crops)
        except (VideoError, OSError) as e:
            store.add_bad(entry, str(e).splitlines()[0][:300])
            say(f"[{i}/{len(todo)}] bad: {entry.path}: {str(e).splitlines()[0][:300]}")
            continue
        store.add(entry, vec)
        say(f"[{i}/{len(todo)}] {entry.path}")
    data = store.finish()
    return {"out": str(store.out), "index": str(store.index), "rows": int(len(data)),
            "dim": int(data.shape[1]) if data.size else store.meta.get("dim"),
            "bad": len(store.failed), "bad_list": str(store.bad) if store.failed else None,
            "skipped": len(entries) - len(todo)}


def main(argv: list[str] | None = None) -> int:
    from backend.inference.predictor import ModelLoadError

    p = argparse.ArgumentParser(prog="python -m backend.features", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("videos", help="a folder of videos (labels from folder names) or a CSV list")
    p.add_argument("--layer", choices=LAYERS, default="pool")
    p.add_argument("--clips", type=int, default=10)
    p.add_argument("--crops", type=int, choices=(1, 3), default=1)
    p.add_argument("--out", required=True, help="the .npy matrix; index, bad list, meta beside it")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    a = p.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    try:
        summary = extract(a.checkpoint, a.videos, a.out, layer=a.layer, clips=a.clips,
                          crops=a.crops, device=device,
                          report=lambda text: print(text, file=sys.stderr, flush=True))
    except (FeatureError, ModelLoadError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    if not summary["rows"]:
        print(f"error: no video could be read (see {summary['bad_list']})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
