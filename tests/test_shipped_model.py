"""The shipped model classifies freshly generated synthetic videos (a seed it never saw)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backend.training.checkpoint import load_checkpoint
from backend.data.datasets import scan_folder
from backend.evaluate import evaluate, video_loader
from backend.synth import generate

ASSETS = Path(__file__).resolve().parents[1] / "backend" / "assets"
SHIPPED, META = ASSETS / "motion_csn.pt", ASSETS / "motion_csn.json"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped model not trained yet")


def test_shipped_files_are_small_plain_and_described():
    assert SHIPPED.stat().st_size < 5e6
    ckpt = torch.load(SHIPPED, weights_only=True)
    assert not {"optimizer", "scheduler", "rng"} & set(ckpt)
    meta = json.loads(META.read_text())
    assert meta["classes"] == ckpt["classes"] and meta["spec"] == ckpt["spec"]
    assert meta["test"]["video_top1"] >= 0.9
    assert all(k in meta for k in ("commands", "train_time_s", "data"))


def test_shipped_model_classifies_new_synthetic_videos(tmp_path: Path):
    model, spec, classes, ckpt = load_checkpoint(SHIPPED)
    cfg = ckpt["config"]
    generate(tmp_path, per_class=3, seed=987654, size=64, frames=32, splits={"test": 1.0})
    assert (tmp_path / "classes.txt").read_text().split() == classes
    _, items = scan_folder(tmp_path / "test", classes)
    assert len(items) == 3 * len(classes)
    m = evaluate(model.to(memory_format=torch.channels_last_3d),
                 video_loader(items, frames=cfg["frames"], rate=cfg["rate"], size=cfg["size"],
                              num_clips=3), torch.device("cpu"))
    assert m["bad_videos"] == 0
    assert m["video_top1"] >= 0.8, m


def test_demo_examples_are_classified_correctly(tmp_path: Path):
    """The demo's generated example clips (112 px, four containers) get their own label."""
    from app.demo import EXAMPLE_SPECS, make_examples
    from backend.inference.predictor import Predictor

    pr = Predictor(SHIPPED)
    for (label, _), path in zip(EXAMPLE_SPECS, make_examples(tmp_path)):
        top = pr.predict(path, num_clips=3).top
        assert top[0][0] == label, (path, top)
