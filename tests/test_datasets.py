"""Datasets: layouts, CSV lists, splits, samples, bad videos, the seeded sampler."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from backend.data.datasets import (ClipDataset, DatasetError, SeededSampler, VideoDataset, collate_skip,
                              kinetics_filename, load_splits, read_classes, read_csv, scan_folder,
                              split_items)
from tests.helpers.motion_data import CLASSES, make_dataset, motion_video


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("motion"), per_class=3, val_per_class=1)


def test_train_val_layout_uses_classes_file(data: Path):
    (data / "classes.txt").write_text("up\nleft\nright\n")  # order differs from sorted folders
    try:
        s = load_splits(data)
        assert s.classes == ["up", "left", "right"]
        assert len(s.train) == 9 and len(s.val) == 3
        for it in s.train + s.val:
            assert Path(it.path).parent.name == s.classes[it.label]
    finally:
        (data / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))


def test_folder_per_class_split_is_stratified_and_seeded(data: Path):
    s1 = load_splits(data / "train", val_fraction=0.34, seed=1)
    s2 = load_splits(data / "train", val_fraction=0.34, seed=1)
    assert s1.classes == sorted(CLASSES)
    assert s1.train == s2.train and s1.val == s2.val
    assert {it.path for it in s1.train}.isdisjoint({it.path for it in s1.val})
    assert sorted(it.label for it in s1.val) == [0, 1, 2]          # one per class
    assert len(s1.train) + len(s1.val) == 9
    with pytest.raises(DatasetError, match="val fraction"):
        split_items(s1.train, 1.5, 0)


def test_csv_path_label_with_split_and_indices(data: Path, tmp_path: Path):
    _, items = scan_folder(data / "train")
    lines = ["path,label,split"]
    for it in items:
        rel = Path(it.path).relative_to(data)
        lines.append(f"{rel},{CLASSES[it.label] if it.label else 0},train")
    lines.append(f"{Path(items[0].path)},left,validate")                # absolute path, alias
    csv = data / "list.csv"
    csv.write_text("\n".join(lines) + "\n")
    s = load_splits(csv)
    assert s.classes == list(CLASSES)                                # from classes.txt
    assert len(s.train) == 9 and len(s.val) == 1
    assert all(Path(it.path).is_file() for it in s.train)
    assert sorted(it.label for it in s.train) == sorted(it.label for it in items)
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.mp4,nosuchclass\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: the label is not one of the 3 known"):
        read_csv(bad, classes=list(CLASSES))


def test_kinetics_csv_finds_files_flat_and_in_label_folders(tmp_path: Path):
    rng = np.random.default_rng(0)
    name_a = kinetics_filename("abc123", 5, 15)
    name_b = kinetics_filename("xyz789", "30.0", "40.0")
    assert name_a == "abc123_000005_000015.mp4" and name_b == "xyz789_000030_000040.mp4"
    motion_video(tmp_path / name_a, "left", rng)
    (tmp_path / "right").mkdir()
    motion_video(tmp_path / "right" / name_b, "right", rng)
    csv = tmp_path / "kinetics_train.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   "left,abc123,5,15,train\nright,xyz789,30,40,train\n")
    classes, by_split = read_csv(csv)
    assert classes == ["left", "right"]
    assert [Path(it.path) for it in by_split["train"]] == [tmp_path / name_a,
                                                          tmp_path / "right" / name_b]


def test_missing_and_empty_data_raise_clear_errors(tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_splits(tmp_path / "nope")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no training videos"):
        load_splits(tmp_path / "empty")
    (tmp_path / "c.txt").write_text("a\na\n")
    with pytest.raises(DatasetError, match="duplicate"):
        read_classes(tmp_path / "c.txt")


def test_clip_dataset_is_a_function_of_index_and_seed(data: Path):
    s = load_splits(data)
    ds = ClipDataset(s.train, frames=8, rate=2, size=24)
    a, ya = ds[(0, 123)]
    b, _ = ds[(0, 123)]
    c, _ = ds[(0, 456)]
    assert a.shape == (3, 8, 24, 24) and a.dtype == torch.float32
    assert ya == s.train[0].label
    assert torch.equal(a, b) and not torch.equal(a, c)
    v = VideoDataset(s.val, frames=8, rate=2, size=24, num_clips=3)
    clips, y = v[0]
    assert clips.shape == (3, 3, 8, 24, 24) and y == s.val[0].label


def test_datasets_normalise_as_the_spec_says(data: Path):
    """An imported model's input_mean/std/order (backend.data.video.Norm) reach training and eval clips."""
    from backend.data.video import MEAN, STD, Norm
    s = load_splits(data)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.3, 0.4)
    v = lambda t: torch.tensor(t).view(3, 1, 1, 1)  # noqa: E731
    to_bgr = lambda x: ((x * v(STD) + v(MEAN)).flip(0) - v(mean)) / v(std)  # noqa: E731
    a, _ = ClipDataset(s.train, frames=8, rate=2, size=24)[(0, 7)]
    b, _ = ClipDataset(s.train, frames=8, rate=2, size=24, norm=Norm(mean, std, "BGR"))[(0, 7)]
    torch.testing.assert_close(b, to_bgr(a), rtol=1e-5, atol=1e-5)
    c, _ = VideoDataset(s.val, frames=8, rate=2, size=24, num_clips=1)[0]
    d, _ = VideoDataset(s.val, frames=8, rate=2, size=24, num_clips=1, norm=Norm(mean, std, "BGR"))[0]
    torch.testing.assert_close(d[0], to_bgr(c[0]), rtol=1e-5, atol=1e-5)


def test_bad_videos_are_skipped_logged_and_counted(data: Path, tmp_path: Path, caplog):
    s = load_splits(data)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    items = s.train[:3] + [type(s.train[0])(str(broken), 0),
                           type(s.train[0])(str(tmp_path / "gone.mp4"), 1)]
    ds = ClipDataset(items, frames=8, rate=2, size=24)
    with caplog.at_level(logging.WARNING, logger="backend.data.datasets"):
        batches = list(DataLoader(ds, batch_size=5, sampler=SeededSampler(ds, seed=0),
                                  collate_fn=collate_skip))
    (x, y, bad), = batches
    assert bad == 2 and x.shape[0] == 3 and y.shape == (3,)
    assert "broken.mp4" in caplog.text and "gone.mp4" in caplog.text
    assert collate_skip([None, None]) == (None, None, 2)


def test_seeded_sampler_depends_only_on_seed_epoch_and_shards(data: Path):
    ds = ClipDataset(load_splits(data).train)
    a, b = SeededSampler(ds, seed=3), SeededSampler(ds, seed=3)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    b.set_epoch(2)
    assert list(a) != list(b)
    r0, r1 = (SeededSampler(ds, seed=3, num_replicas=2, rank=r) for r in (0, 1))
    i0, i1 = {i for i, _ in r0}, {i for i, _ in r1}
    assert len(r0) == len(r1) == 5 and i0 | i1 == set(range(9))


def test_frame_cache_serves_the_same_clips_within_its_budget(data: Path, tmp_path: Path):
    from backend.data.framecache import FrameCache
    s = load_splits(data)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    paths = [it.path for it in s.train] + [str(broken)]
    cache = FrameCache(64).fill(paths)
    assert len(cache.videos) == len(s.train) and str(broken) not in cache.videos
    assert cache.stats()["decoded_per_clip"] == 0
    one = cache.videos[s.train[0].path].frames.nbytes / 2**20
    small = FrameCache(one * 2.5).fill(paths)                  # room for two videos
    assert len(small.videos) == 2 and small.stats()["decoded_per_clip"] == len(paths) - 2
    assert FrameCache(0).fill(paths).videos == {}

    plain = ClipDataset(s.train, frames=8, rate=2, size=24)
    cached = ClipDataset(s.train, frames=8, rate=2, size=24, cache=cache)
    a, ya = cached[(1, 7)]
    b, _ = cached[(1, 7)]
    c, yc = plain[(1, 7)]
    assert torch.equal(a, b) and a.shape == c.shape and ya == yc
    # same start, scale and crop; only the resize differs (torch vs swscale bilinear)
    assert (a - c).abs().mean() < 0.15
    va = VideoDataset(s.val, frames=8, rate=2, size=24, num_clips=3,
                      cache=FrameCache(64).fill([it.path for it in s.val]))[0][0]
    vb = VideoDataset(s.val, frames=8, rate=2, size=24, num_clips=3)[0][0]
    assert va.shape == vb.shape and (va - vb).abs().mean() < 0.15


def test_frame_cache_file_shares_the_decode_and_refuses_what_changed(data: Path, tmp_path: Path):
    """A cache file gives back exactly the decoded frames; a video whose file changed, one over
    the budget, or a damaged file is decoded again instead."""
    import os

    from backend.data.framecache import FrameCache
    paths = [it.path for it in load_splits(data).train]
    first = FrameCache(64).fill(paths)
    file = tmp_path / "frames.npz"
    first.save(file)
    again = FrameCache(64)
    assert again.load(file, paths) == len(paths) == again.stats()["from_file"]
    for p in paths:
        a, b = first.videos[p], again.videos[p]
        assert np.array_equal(a.frames, b.frames) and (a.fps, a.duration) == (b.fps, b.duration)
    assert FrameCache(64).load(file, paths[:2]) == 2                    # only what is asked for
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))     # the video changed
    try:
        changed = FrameCache(64)
        assert changed.load(file, paths) == len(paths) - 1 and paths[0] not in changed.videos
    finally:
        os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    one = first.videos[paths[1]].frames.nbytes / 2**20
    assert FrameCache(one * 1.5).load(file, paths[1:]) == 1              # the budget holds
    file.write_bytes(file.read_bytes()[:100])                            # a damaged file
    assert FrameCache(64).load(file, paths) == 0
    assert FrameCache(64).load(tmp_path / "missing.npz", paths) == 0
