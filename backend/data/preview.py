"""What a dataset path holds, as the trainer will read it: classes, split sizes, which split
validates, a few sample videos. Pure library (the Train page shows it)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from backend.data.datasets import DatasetError, Splits, load_splits, scan_folder

MAX_SAMPLES = 8   # sample videos offered for thumbnails (one per class, first classes)


@dataclass
class DatasetPreview:
    classes: list[str]
    train: int                       # videos the trainer trains on
    val: int                         # videos it validates on
    validation: str                  # how the validation split is chosen, for people
    per_class: dict[str, tuple[int, int]] = field(default_factory=dict)  # class -> (train, val)
    test: int | None = None          # a test/ folder beside train/ (left for evaluation)
    samples: list[tuple[str, str]] = field(default_factory=list)   # (class, video path)


def _validation_text(splits: Splits, val_fraction: float, seed: int) -> str:
    if "split, seed" in splits.source:
        return (f"{val_fraction:.0%} of each class held out of the training videos (seed {seed}), "
                "since the data has no val split")
    if splits.source.startswith("CSV"):
        return "the CSV's rows marked val"
    return "the val/ folder"


def preview_dataset(path: str | os.PathLike, *, val_fraction: float = 0.1,
                    seed: int = 0) -> DatasetPreview:
    """The splits :func:`backend.data.datasets.load_splits` makes of ``path`` (the trainer's
    defaults), counted. Raises :class:`DatasetError` when the trainer could not use it."""
    splits = load_splits(path, val_fraction=val_fraction, seed=seed)
    counts = {c: [0, 0] for c in splits.classes}
    for k, items in enumerate((splits.train, splits.val)):
        for it in items:
            counts[splits.classes[it.label]][k] += 1
    samples: list[tuple[str, str]] = []
    for it in splits.train:
        name = splits.classes[it.label]
        if len(samples) < MAX_SAMPLES and all(c != name for c, _ in samples):
            samples.append((name, it.path))
    test = None
    root = Path(path)
    if root.is_dir() and (root / "test").is_dir():
        try:
            test = len(scan_folder(root / "test", splits.classes)[1])
        except DatasetError:
            test = None
    return DatasetPreview(classes=splits.classes, train=len(splits.train), val=len(splits.val),
                          validation=_validation_text(splits, val_fraction, seed),
                          per_class={c: (n[0], n[1]) for c, n in counts.items()}, test=test,
                          samples=samples)


def first_frame(path: str | os.PathLike, short_side: int = 96):
    """The video's first frame, uint8 (H, W, 3), short side scaled to ``short_side``."""
    from backend.data.video import decode_clip

    return decode_clip(path, 0.0, frames=1, rate=1, short_side=short_side)[0]
