"""Video datasets: where the videos are (folders, CSV lists, splits) and what a sample is.

Layouts understood by :func:`load_splits` (``--data`` of the trainer):

- ``root/train/<class>/<video>`` and ``root/val/<class>/<video>`` (``val`` optional; a
  ``test`` folder is left alone for held-out evaluation);
- ``root/<class>/<video>``: one folder per class, split by ``val_fraction`` with a seed;
- UCF101, HMDB51 and Something-Something v2 as released, with their official split and label
  files (``backend.data.layouts``);
- a CSV list, either ``path,label[,split]`` (paths relative to the CSV's folder or
  ``video_root``; the label is a class name or an index) or Kinetics-style
  ``label,youtube_id,time_start,time_end[,split]`` with files named
  ``{youtube_id}_{start:06d}_{end:06d}.mp4`` under ``video_root`` (or ``video_root/<label>/``).

Classes come from ``classes.txt`` (one name per line, the line number is the index) next to
the data when there is one, else from the sorted folder names / CSV labels.

Samples. :class:`ClipDataset` (training) returns ``(clip float (3, T, S, S), label)`` with the
paper's jittering (§4.1): a random start, the short side scaled to ``s ~ U[scale_min,
scale_max]``, a random ``S x S`` crop. Its randomness comes from a per-sample seed handed in by
:class:`SeededSampler` (derived from the run seed, the epoch and the index), so an epoch is
the same whatever the number of workers, and a resumed run sees exactly the same data.
:class:`VideoDataset` (evaluation) returns ``(clips float (N, 3, T, S, S), label)`` from
``backend.data.video.test_clips``. A video that cannot be read yields ``None``, logs a warning and
is dropped by :func:`collate_skip`, which counts it: bad files never stop an epoch.
"""
from __future__ import annotations

import csv
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from backend.data.dataset_types import DatasetError, Splits, VideoItem  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

VIDEO_EXTS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg",
                        ".gif", ".ogv", ".flv", ".wmv", ".3gp"})
CLASSES_FILE = "classes.txt"


# --- class lists ----------------------------------------------------------------------------
def read_classes(path: str | os.PathLike) -> list[str]:
    """``classes.txt``: one class name per line; blank lines ignored; duplicates refused."""
    names = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DatasetError(f"{path}: no class names")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"{path}: {len(dup)} duplicate class name(s)")
    return names


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_EXTS


# --- folder-per-class -----------------------------------------------------------------------
def scan_folder(root: str | os.PathLike, classes: Sequence[str] | None = None
                ) -> tuple[list[str], list[VideoItem]]:
    """``root/<class>/<video>`` -> (classes, items). Unknown class folders are an error when
    ``classes`` is given; classes without videos are allowed (an empty val class)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder {root} does not exist")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = folders
    else:
        unknown = sorted(set(folders) - set(classes))
        if unknown:
            raise DatasetError(f"{root}: class folder(s) {unknown} are not in the class list")
    index = {c: i for i, c in enumerate(classes)}
    items = [VideoItem(str(p), index[c]) for c in folders
             for p in sorted((root / c).rglob("*")) if _is_video(p)]
    return list(classes), items


# --- CSV lists ------------------------------------------------------------------------------
def kinetics_filename(youtube_id: str, start: float, end: float) -> str:
    """File name of a Kinetics clip as the usual download scripts write it."""
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}.mp4"


def read_csv(path: str | os.PathLike, video_root: str | os.PathLike | None = None,
             classes: Sequence[str] | None = None
             ) -> tuple[list[str], dict[str, list[VideoItem]]]:
    """A CSV list -> (classes, {split: items}); rows without a ``split`` column go to "all".

    Missing files are kept (they are counted as bad videos when read), so one absent
    download does not invalidate a 240K-row list.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"CSV list {path} does not exist")
    root = Path(video_root) if video_root is not None else path.parent
    kind, rows = _csv_layout(path, _csv_rows(path))
    recs = _csv_records(path, rows, kind, root)
    if classes is None:
        classes = _csv_classes(recs)
    return list(classes), _csv_items(path, recs, classes)


def _csv_rows(path: Path) -> list[list[str]]:
    """The CSV's rows without blank ones; never quotes the file's bytes in an error."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error):
        raise DatasetError(f"{path}: not a UTF-8 CSV text file") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(f"{path}: empty CSV list")
    return rows


def _csv_layout(path: Path, rows: list[list[str]]) -> tuple[str, list[list[str]]]:
    """("kinetics" | "path", rows with a header row first): a header-less list gets
    path,label[,split]."""
    header = [c.strip().lower() for c in rows[0]]
    if "youtube_id" in header:
        return "kinetics", rows
    if "path" in header and "label" in header:
        return "path", rows
    if len(header) >= 2 and not any(h in ("path", "label") for h in header):
        return "path", [["path", "label", "split"][:len(rows[0])]] + rows
    raise DatasetError(f"{path}: expected columns path,label[,split] or "
                       f"label,youtube_id,time_start,time_end[,split]; its first row "
                       f"has {len(rows[0])} column(s) that match neither")


def _csv_records(path: Path, rows: list[list[str]], kind: str,
                 root: Path) -> list[tuple[str, str, str]]:
    """(file, label, split) per data row; a bad row is named by its line, not quoted."""
    col = {h.strip().lower(): i for i, h in enumerate(rows[0])}
    need = ("label", "youtube_id", "time_start", "time_end") if kind == "kinetics" else ("path", "label")
    missing = [h for h in need if h not in col]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}")
    recs: list[tuple[str, str, str]] = []
    for n, r in enumerate(rows[1:], start=2):
        try:
            label = r[col["label"]].strip()
            split = r[col["split"]].strip().lower() if "split" in col else "all"
            if kind == "kinetics":
                name = kinetics_filename(r[col["youtube_id"]].strip(), r[col["time_start"]],
                                         r[col["time_end"]])
                f1, f2 = root / name, root / label / name
                file = f2 if (not f1.exists() and f2.exists()) else f1
            else:
                p = Path(r[col["path"]].strip())
                file = p if p.is_absolute() else root / p
        except (IndexError, ValueError):
            raise DatasetError(f"{path}:{n}: bad row ({len(r)} column(s); expected "
                               f"{', '.join(need)}{' and split' if 'split' in col else ''})") from None
        recs.append((str(file), label, {"validate": "val", "validation": "val"}.get(split, split)))
    if not recs:
        raise DatasetError(f"{path}: no rows")
    return recs


def _csv_classes(recs: list[tuple[str, str, str]]) -> list[str]:
    """The classes a list's labels name: 0..max for class indices, else the sorted names."""
    labels = {lb for _, lb, _ in recs}
    if all(lb.isdigit() for lb in labels):
        return [str(i) for i in range(max(int(lb) for lb in labels) + 1)]
    return sorted(labels)


def _csv_items(path: Path, recs: list[tuple[str, str, str]],
               classes: Sequence[str]) -> dict[str, list[VideoItem]]:
    """{split: items}, each label a class name or a class index."""
    index = {c: i for i, c in enumerate(classes)}
    out: dict[str, list[VideoItem]] = {}
    for n, (file, lb, split) in enumerate(recs, start=2):
        if lb in index:
            y = index[lb]
        elif lb.isdigit() and int(lb) < len(classes):
            y = int(lb)
        else:
            raise DatasetError(f"{path}:{n}: the label is not one of the {len(classes)} known "
                               f"classes (nor a class index)")
        out.setdefault(split, []).append(VideoItem(file, y))
    return out


# --- splits ---------------------------------------------------------------------------------
def split_items(items: Sequence[VideoItem], val_fraction: float, seed: int
                ) -> tuple[list[VideoItem], list[VideoItem]]:
    """Stratified random split: ``val_fraction`` of each class (at least one video of every
    class with two or more) goes to val."""
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val fraction must be in [0, 1), got {val_fraction}")
    rng = random.Random(seed)
    train: list[VideoItem] = []
    val: list[VideoItem] = []
    for y in sorted({it.label for it in items}):
        group = [it for it in items if it.label == y]
        rng.shuffle(group)
        k = 0 if val_fraction == 0 else max(1 if len(group) > 1 else 0,
                                            round(len(group) * val_fraction))
        val += group[:k]
        train += group[k:]
    return sorted(train, key=lambda i: i.path), sorted(val, key=lambda i: i.path)


def _find_classes_file(*dirs: Path) -> list[str] | None:
    for d in dirs:
        if (d / CLASSES_FILE).is_file():
            return read_classes(d / CLASSES_FILE)
    return None


def load_splits(data: str | os.PathLike, *, val_data: str | os.PathLike | None = None,
                val_fraction: float = 0.1, seed: int = 0,
                video_root: str | os.PathLike | None = None, split: int = 1) -> Splits:
    """Resolve ``--data`` (folder or CSV, see module doc; UCF101 / HMDB51 / SSv2 folders, see
    ``backend.data.layouts``) into classes + train/val items. ``split``: the official split (1-3)."""
    from backend.data.layouts import detect_layout, load_layout
    data = Path(data)
    if not data.exists():
        raise DatasetError(f"data path {data} does not exist")
    layout = detect_layout(data)
    if layout is not None and val_data is None:
        return load_layout(data, layout, split=split, video_root=video_root)
    if split != 1:
        raise DatasetError(f"split {split}: only UCF101 and HMDB51 folders have official splits "
                           f"2 and 3; {data} is not one")
    val: list[VideoItem] | None = None
    if data.is_file():
        classes = _find_classes_file(data.parent)
        classes, by_split = read_csv(data, video_root, classes)
        if "train" in by_split:
            train, val = by_split["train"], by_split.get("val", [])
        else:
            train = [it for s in by_split.values() for it in s]
        source = f"CSV {data}"
    elif (data / "train").is_dir():
        classes = _find_classes_file(data, data / "train")
        classes, train = scan_folder(data / "train", classes)
        if (data / "val").is_dir():
            _, val = scan_folder(data / "val", classes)
        source = f"folders {data}/train" + (", val" if val is not None else "")
    else:
        classes = _find_classes_file(data)
        classes, train = scan_folder(data, classes)
        source = f"folders {data}"
    if val_data is not None:
        vd = Path(val_data)
        if vd.is_file():
            _, vs = read_csv(vd, video_root, classes)
            val = [it for s in vs.values() for it in s]
        else:
            _, val = scan_folder(vd, classes)
    if val is None:
        train, val = split_items(train, val_fraction, seed)
        source += f" (val: {val_fraction:.0%} split, seed {seed})"
    if not train:
        raise DatasetError(f"no training videos found in {data} (looked for "
                           f"{', '.join(sorted(VIDEO_EXTS))} files in class folders)")
    if len(classes) < 2:
        raise DatasetError(f"{data}: need at least 2 classes, found {len(classes)}")
    return Splits(classes=classes, train=train, val=val, source=source)


# --- samples --------------------------------------------------------------------------------
class ClipDataset(Dataset):
    """Training clips with temporal + scale + crop jittering (paper §4.1).

    Indexed by ``(index, sample_seed)`` pairs from :class:`SeededSampler`; a plain int index
    gives a deterministic centre clip (seed 0).
    """

    def __init__(self, items: Sequence[VideoItem], *, frames: int = 8, rate: int = 2,
                 size: int = 112, scale: tuple[int, int] | None = None, train: bool = True,
                 norm: Any = None, cache=None):
        from backend.data.video import ClipTransform, Norm
        self.items, self.cache = list(items), cache  # cache: a backend.data.framecache.FrameCache
        self.frames, self.rate, self.size, self.train = frames, rate, size, train
        self.norm = norm or Norm()  # the spec's input normalisation (backend.data.video.Norm.of)
        # default scale: the paper's 256-320 for a 224 crop, in proportion
        self.transform = ClipTransform(size=size, train=True, scale=scale, norm=self.norm)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int, seed: int) -> torch.Tensor:
        """The clip for ``index`` drawn with ``seed``; raises ``backend.data.video.VideoError``."""
        from backend.data import video
        path = self.items[index].path
        cached = self.cache.get(path) if self.cache is not None else None
        if cached is not None and self.train:
            from backend.data.framecache import cached_train_clip
            return cached_train_clip(cached, self.transform, frames=self.frames, rate=self.rate,
                                     rng=np.random.default_rng(seed))
        if not self.train:
            return video.test_clips(path, frames=self.frames, rate=self.rate, size=self.size,
                                    num_clips=1, norm=self.norm)[0]
        return video.train_clip(path, self.transform, frames=self.frames, rate=self.rate,
                                rng=np.random.default_rng(seed), threads=1)

    def __getitem__(self, key: int | tuple[int, int]):
        index, seed = key if isinstance(key, tuple) else (key, 0)
        from backend.data.video import VideoError
        try:
            return self.load(index, seed), self.items[index].label
        except (VideoError, OSError) as e:
            log.warning("skipping unreadable video %s: %s", self.items[index].path, e)
            return None


class VideoDataset(Dataset):
    """Video-level evaluation: ``(test_clips (N, 3, T, S, S), label)`` per video (paper §4.1:
    N clips uniformly spread over the video, centre crops; ``crops=3``: N x 3 views, clip-major,
    decoded from the file)."""

    def __init__(self, items: Sequence[VideoItem], *, frames: int = 8, rate: int = 2,
                 size: int = 112, num_clips: int = 10, norm: Any = None, cache=None, crops: int = 1):
        if crops != 1 and cache is not None:
            raise ValueError("the frame cache serves centre crops only (crops=1)")
        self.items, self.cache = list(items), cache  # cache: a backend.data.framecache.FrameCache
        self.frames, self.rate, self.size, self.num_clips = frames, rate, size, num_clips
        self.crops = crops
        self.norm = norm  # backend.data.video.Norm (None: Kinetics mean/std, RGB)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        from backend.data.video import VideoError, test_clips
        item = self.items[index]
        cached = self.cache.get(item.path) if self.cache is not None else None
        if cached is not None:
            from backend.data.framecache import cached_test_clips
            from backend.data.video import ClipTransform, Norm
            tf = ClipTransform(size=self.size, norm=self.norm or Norm())
            return cached_test_clips(cached, tf, frames=self.frames,
                                     rate=self.rate, num_clips=self.num_clips), item.label
        try:
            clips = test_clips(item.path, frames=self.frames, rate=self.rate, size=self.size,
                               num_clips=self.num_clips, crops=self.crops, norm=self.norm)
            return torch.as_tensor(clips), item.label
        except (VideoError, OSError) as e:
            log.warning("skipping unreadable video %s: %s", item.path, e)
            return None


def collate_skip(batch: list) -> tuple[torch.Tensor | None, torch.Tensor | None, int]:
    """Stack the readable samples; return ``(x, y, n_bad)`` (x, y None if all were bad)."""
    good = [b for b in batch if b is not None]
    bad = len(batch) - len(good)
    if not good:
        return None, None, bad
    return (torch.stack([g[0] for g in good]),
            torch.tensor([g[1] for g in good], dtype=torch.long), bad)


def video_loader(items: list[VideoItem], *, frames: int, rate: int, size: int, num_clips: int,
                 videos_per_batch: int = 1, workers: int = 0, norm: Any = None,
                 cache=None, crops: int = 1) -> DataLoader:
    """``norm``: a backend.data.video.Norm, normally ``Norm.of(spec)`` (None: Kinetics, RGB);
    ``cache``: a backend.data.framecache.FrameCache; ``crops``: 1 (centre) or 3 per clip."""
    ds = VideoDataset(items, frames=frames, rate=rate, size=size, num_clips=num_clips, norm=norm,
                      cache=cache, crops=crops)
    return DataLoader(ds, batch_size=videos_per_batch, shuffle=False, num_workers=workers,
                      collate_fn=collate_skip)


class SeededSampler(Sampler):
    """``DistributedSampler`` (also for one process) yielding ``(index, sample_seed)``.

    The order depends on ``(seed, epoch)`` only and each sample's seed on ``(seed, epoch,
    index)``: the data of epoch k is the same in a fresh and in a resumed run, with any
    number of workers.
    """

    def __init__(self, dataset: Dataset, *, seed: int, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True):
        self.base = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank,
                                       shuffle=shuffle, seed=seed, drop_last=False)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.base:
            yield i, hash((self.seed, self.epoch, i)) & 0x7FFFFFFF
