"""The standard benchmark layouts, read from their official split and label files.

A folder is one of these when it holds the marker named here (checked in this order; two
markers in one folder are an error, never a guess):

- **UCF101**: ``ucfTrainTestlist/`` (from ``UCF101TrainTestSplits-RecognitionTask.zip``) with
  ``classInd.txt`` ("1 ApplyEyeMakeup", 1-based), ``trainlist0K.txt`` ("Class/v_X.avi 1") and
  ``testlist0K.txt`` ("Class/v_X.avi", no label); videos under ``UCF-101/`` (``UCF101.rar``) or
  ``videos/`` (mmaction2's rename).
- **HMDB51**: ``testTrainMulti_7030_splits/`` (``test_train_splits.rar``) with one
  ``<class>_test_splitK.txt`` per class and split, lines "video.avi 1" (1 train, 2 test,
  0 unused); videos under ``hmdb51_org/<class>/``, ``videos/<class>/`` or ``<class>/``.
  Classes are the sorted class names of the split files (as mmaction2's classInd).
- **Something-Something v2**: ``something-something-v2-labels.json`` ({template: "index"})
  with ``-train.json`` / ``-validation.json`` (lists of {id, label, template, placeholders});
  an entry's class is its template with the ``[ ]`` around the placeholders removed; videos
  ``<id>.webm`` under ``20bn-something-something-v2/`` or ``videos/``. The test list has no
  labels and is not used.

``--split K`` (1-3) picks UCF101's / HMDB51's official split; SSv2 has one. The official test
list is the held-out (validation) set. A missing split file is an error naming it; a video
the list names but the disk lacks is kept and counted as unreadable when read (like CSV
lists), so one absent download does not invalidate the list.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from backend.data.dataset_types import DatasetError, Splits, VideoItem

UCF_DIR, HMDB_DIR, SSV2_LABELS = "ucfTrainTestlist", "testTrainMulti_7030_splits", \
    "something-something-v2-labels.json"
MAX_LIST_BYTES = 64 << 20    # the real SSv2 train list is ~30 MB
SPLITS = (1, 2, 3)
LAYOUT_NAMES = {"ucf101": "UCF101", "hmdb51": "HMDB51", "ssv2": "Something-Something v2"}


def detect_layout(data: str | os.PathLike) -> str | None:
    """``"ucf101"``, ``"hmdb51"``, ``"ssv2"`` or None (a plain folder / CSV)."""
    data = Path(data)
    if not data.is_dir():
        return None
    found = _markers(data)
    if not found and _markers(data.parent):
        # a release's video or split folder given alone would be read as class folders with a
        # random split, mixing UCF101's groups / HMDB51's clips across train and val
        raise DatasetError(f"{data} is part of the {LAYOUT_NAMES[_markers(data.parent)[0]]} folder "
                           f"{data.parent}; give that folder to use its official splits")
    if len(found) > 1:
        raise DatasetError(f"{data}: holds the markers of {' and '.join(LAYOUT_NAMES[k] for k in found)}; "
                           "keep one dataset per folder")
    return found[0] if found else None


def _markers(folder: Path) -> list[str]:
    return [k for k, marker in (("ucf101", UCF_DIR), ("hmdb51", HMDB_DIR), ("ssv2", SSV2_LABELS))
            if (folder / marker).exists()]


def load_layout(data: str | os.PathLike, kind: str, *, split: int = 1,
                video_root: str | os.PathLike | None = None) -> Splits:
    """The train and held-out lists of a standard layout (see module doc)."""
    data = Path(data)
    if split not in SPLITS:
        raise DatasetError(f"split must be 1, 2 or 3, got {split}")
    if kind == "ssv2" and split != 1:
        raise DatasetError(f"split {split}: Something-Something v2 has one official split (use 1)")
    reader = {"ucf101": _ucf101, "hmdb51": _hmdb51, "ssv2": _ssv2}[kind]
    classes, train, val, what = reader(data, split, _video_dir(data, kind, video_root))
    if not train:
        raise DatasetError(f"{data}: the {LAYOUT_NAMES[kind]} training list is empty")
    return Splits(classes=classes, train=train, val=val,
                  source=f"{LAYOUT_NAMES[kind]} {data} ({what})")


def _video_dir(data: Path, kind: str, video_root: str | os.PathLike | None) -> Path:
    if video_root is not None:
        if not Path(video_root).is_dir():
            raise DatasetError(f"video root {video_root} is not a folder")
        return Path(video_root)
    names = {"ucf101": ("UCF-101", "videos"), "hmdb51": ("hmdb51_org", "videos", "."),
             "ssv2": ("20bn-something-something-v2", "videos")}[kind]
    for n in names:
        if (data / n).is_dir():
            return data / n
    raise DatasetError(f"{data}: no {LAYOUT_NAMES[kind]} video folder ({' or '.join(names)}); "
                       "or give --video-root")


def _read_bounded(path: Path) -> str:
    """A split / label file's text: must exist, bounded in size, UTF-8; never quoted."""
    if not path.is_file():
        raise DatasetError(f"missing split file {path}")
    if path.stat().st_size > MAX_LIST_BYTES:
        raise DatasetError(f"{path}: larger than {MAX_LIST_BYTES >> 20} MB; not a split file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text") from None


def _read_text(path: Path) -> list[str]:
    """Non-blank lines (CRLF as in the official zips), stripped."""
    return [ln.strip() for ln in _read_bounded(path).splitlines() if ln.strip()]


def _read_json(path: Path):
    try:
        return json.loads(_read_bounded(path))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON (line {e.lineno})") from None


def _plain_name(name: str) -> bool:
    """A bare file name: no folder part, not hidden, not '..' (lists cannot point elsewhere)."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


# --- UCF101 ------------------------------------------------------------------------------------
def _ucf101(data: Path, split: int, videos: Path):
    lists = data / UCF_DIR
    ind = lists / "classInd.txt"
    classes: list[str] = []
    for n, ln in enumerate(_read_text(ind), start=1):
        parts = ln.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise DatasetError(f"{ind}:{n}: expected '<index> <class>' with indices 1, 2, 3, ...")
        classes.append(parts[1])
    index = {c: i for i, c in enumerate(classes)}

    def read(name: str, labelled: bool) -> list[VideoItem]:
        path, items = lists / name, []
        for n, ln in enumerate(_read_text(path), start=1):
            parts = ln.split()
            cls, _, name = parts[0].partition("/")
            if cls not in index or not _plain_name(name) or len(parts) != (2 if labelled else 1):
                raise DatasetError(f"{path}:{n}: expected 'Class/video.avi{' <label>' if labelled else ''}' "
                                   f"with a class of {ind.name}")
            if labelled and parts[1] != str(index[cls] + 1):
                raise DatasetError(f"{path}:{n}: the label disagrees with {ind.name} for its class folder")
            items.append(VideoItem(str(videos / cls / name), index[cls]))
        return items

    train = read(f"trainlist{split:02d}.txt", True)
    test = read(f"testlist{split:02d}.txt", False)
    return classes, train, test, f"split {split}: trainlist{split:02d} / testlist{split:02d} held out"


# --- HMDB51 ------------------------------------------------------------------------------------
def _hmdb51(data: Path, split: int, videos: Path):
    folder = data / HMDB_DIR
    suffix = "_test_split"
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(".txt")
                   and suffix in p.stem)
    classes = sorted({p.stem.rsplit(suffix, 1)[0] for p in files})
    if not classes:
        raise DatasetError(f"{folder}: no <class>{suffix}K.txt files")
    train: list[VideoItem] = []
    test: list[VideoItem] = []
    for y, cls in enumerate(classes):
        path = folder / f"{cls}{suffix}{split}.txt"
        for n, ln in enumerate(_read_text(path), start=1):
            parts = ln.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2") or not _plain_name(parts[0]):
                raise DatasetError(f"{path}:{n}: expected 'video.avi 0|1|2' (0 unused, 1 train, 2 test)")
            if parts[1] != "0":
                (train if parts[1] == "1" else test).append(VideoItem(str(videos / cls / parts[0]), y))
    return classes, train, test, f"split {split}: *{suffix}{split}.txt, 2 = held out"


# --- Something-Something v2 --------------------------------------------------------------------
def _ssv2(data: Path, split: int, videos: Path):
    labels = _read_json(data / SSV2_LABELS)
    if not isinstance(labels, dict) or not labels:
        raise DatasetError(f"{data / SSV2_LABELS}: expected an object {{template: index}}")
    try:
        by_index = {int(v): k for k, v in labels.items()}
    except (TypeError, ValueError):
        raise DatasetError(f"{data / SSV2_LABELS}: every index must be a whole number") from None
    if sorted(by_index) != list(range(len(labels))):
        raise DatasetError(f"{data / SSV2_LABELS}: indices must be 0..{len(labels) - 1}, each once")
    classes = [by_index[i] for i in range(len(labels))]
    index = {c: i for i, c in enumerate(classes)}

    def read(name: str) -> list[VideoItem]:
        path = data / name
        entries = _read_json(path)
        if not isinstance(entries, list):
            raise DatasetError(f"{path}: expected a list of {{id, label, template, placeholders}}")
        items = []
        for n, e in enumerate(entries):
            ok = isinstance(e, dict) and isinstance(e.get("id"), (str, int)) and isinstance(e.get("template"), str)
            cls = e["template"].replace("[", "").replace("]", "") if ok else None
            if cls not in index or not str(e["id"]).isalnum():
                raise DatasetError(f"{path}: entry {n}: needs an 'id' and a 'template' that is a "
                                   f"class of {SSV2_LABELS} once its [ ] are removed")
            items.append(VideoItem(str(videos / f"{e['id']}.webm"), index[cls]))
        return items

    train = read("something-something-v2-train.json")
    val = read("something-something-v2-validation.json")
    return classes, train, val, "train / validation lists; validation held out"
