"""Small UCF101 / HMDB51 / Something-Something v2 trees laid out as the official releases are,
with real videos (the tiny motion clips of motion_data, in each release's container)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.helpers.motion_data import motion_video

# UCF101's own spelling quirk: the class folder is HandstandPushups, the files v_HandStandPushups_*
UCF_CLASSES = {"ApplyEyeMakeup": "ApplyEyeMakeup", "HandstandPushups": "HandStandPushups", "YoYo": "YoYo"}
HMDB_CLASSES = ("brush_hair", "cartwheel", "pour")
SSV2_TEMPLATES = ("Pushing something from left to right", "Pushing something from right to left",
                  "Moving something up")
_MOTION = ("right", "left", "up")   # class i's videos move this way (learnable, cheap)


def make_ucf101(root: Path, groups: int = 3, seed: int = 0) -> Path:
    """``UCF-101/<Class>/v_<Class>_gGG_c01.avi`` and ``ucfTrainTestlist/`` (CRLF, as released):
    split k holds group k out."""
    rng = np.random.default_rng(seed)
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_bytes("".join(f"{i} {c}\r\n" for i, c in
                                                 enumerate(UCF_CLASSES, 1)).encode())
    names = {}
    for i, (cls, stem) in enumerate(UCF_CLASSES.items()):
        (root / "UCF-101" / cls).mkdir(parents=True)
        for g in range(1, groups + 1):
            name = f"v_{stem}_g{g:02d}_c01.avi"
            motion_video(root / "UCF-101" / cls / name, _MOTION[i], rng, frames=16)
            names.setdefault(g, []).append((cls, name, i + 1))
    for k in (1, 2, 3):
        train = [f"{c}/{n} {y}\r\n" for g, vs in names.items() if g != k for c, n, y in vs]
        test = [f"{c}/{n}\r\n" for c, n, _ in names.get(k, [])]
        (lists / f"trainlist{k:02d}.txt").write_bytes("".join(train).encode())
        (lists / f"testlist{k:02d}.txt").write_bytes("".join(test).encode())
    return root


def make_hmdb51(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    """``hmdb51_org/<class>/<video>.avi`` and ``testTrainMulti_7030_splits/<class>_test_splitK.txt``
    ("name.avi 1 " with the release's trailing space; 1 train, 2 test, 0 unused). In split k
    video j is test when j % 3 == k - 1, except video 0 of each class is unused in split 3."""
    rng = np.random.default_rng(seed)
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for i, cls in enumerate(HMDB_CLASSES):
        (root / "hmdb51_org" / cls).mkdir(parents=True)
        names = [f"Video{j}_{cls}_f_cm_np1_fr_med_{j}.avi" for j in range(per_class)]
        for n in names:
            motion_video(root / "hmdb51_org" / cls / n, _MOTION[i], rng, frames=16)
        for k in (1, 2, 3):
            tags = ["0" if (k == 3 and j == 0) else "2" if j % 3 == k - 1 else "1" for j in range(per_class)]
            (splits / f"{cls}_test_split{k}.txt").write_text("".join(f"{n} {t} \n" for n, t in zip(names, tags)))
    return root


def make_ssv2(root: Path, train: int = 2, val: int = 1, seed: int = 0) -> Path:
    """``20bn-something-something-v2/<id>.webm`` and the four ``something-something-v2-*.json``."""
    rng = np.random.default_rng(seed)
    videos = root / "20bn-something-something-v2"
    videos.mkdir(parents=True)
    (root / "something-something-v2-labels.json").write_text(
        json.dumps({t: str(i) for i, t in enumerate(SSV2_TEMPLATES)}, indent=1))
    lists: dict[str, list] = {"train": [], "validation": [], "test": []}
    vid = 1000
    for i, t in enumerate(SSV2_TEMPLATES):
        bracketed = t.replace("something", "[something]")
        for part, n in (("train", train), ("validation", val), ("test", 1)):
            for _ in range(n):
                vid += 1
                motion_video(videos / f"{vid}.webm", _MOTION[i], rng, frames=16)
                entry = {"id": str(vid)} if part == "test" else {
                    "id": str(vid), "label": t.replace("something", "a pen"), "template": bracketed,
                    "placeholders": ["a pen"] * bracketed.count("[something]")}
                lists[part].append(entry)
    for part, entries in lists.items():
        (root / f"something-something-v2-{part}.json").write_text(json.dumps(entries))
    return root
