"""Fine-tuning controls: frozen stages, norm_eval, linear probe, backbone learning rate."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from backend.training.checkpoint import FORMAT, load_checkpoint, read_checkpoint, save_atomic
from backend.csn import ArchSpec, build_model
from backend.training.finetune import FinetunePlan, freeze, param_groups, planned_counts, set_train_mode
from backend.train import TrainConfig, train
from tests.helpers.motion_data import TINY_SPEC, make_dataset

REPO = Path(__file__).resolve().parents[1]


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _random_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN running statistics away from their init, so a change would show."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = 0.5 + torch.rand(m.num_features, generator=g)
    return model


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ft"), per_class=4, val_per_class=1)


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory) -> Path:
    """A 'pretrained' tiny model with 5 classes (the data has 3: the head is new)."""
    spec = ArchSpec.from_dict({**TINY_SPEC, "num_classes": 5, "frames": 8, "height": 32, "width": 32})
    model = _random_stats(build_model(spec))
    path = tmp_path_factory.mktemp("base") / "base.pt"
    save_atomic({"format": FORMAT, "model": model.state_dict(), "spec": spec.to_dict(),
                 "classes": list("abcde")}, path)
    return path


def test_plan_freezes_the_stem_and_the_first_stages_and_counts_exactly():
    model = build_model(ArchSpec.from_dict({**TINY_SPEC, "num_classes": 3}))
    total = _numel(model)
    assert freeze(model, FinetunePlan())["trainable_params"] == total
    got = freeze(model, FinetunePlan(frozen_stages=2))
    frozen = _numel(model.conv1) + _numel(model.conv2) + _numel(model.conv3)
    assert got == {"trainable_params": total - frozen, "frozen_params": frozen, "total_params": total}
    assert not any(p.requires_grad for p in model.conv3.parameters())
    assert all(p.requires_grad for p in model.conv4.parameters())
    assert freeze(model, FinetunePlan(frozen_stages=0))["frozen_params"] == _numel(model.conv1)
    probe = freeze(model, FinetunePlan(linear_probe=True))
    assert probe["trainable_params"] == _numel(model.head) > 0
    # the page's count (a meta-device model) is the trainer's
    assert planned_counts(model.spec, FinetunePlan(frozen_stages=3)) == freeze(model, FinetunePlan(frozen_stages=3))


def test_modes_and_groups():
    model = build_model(ArchSpec.from_dict({**TINY_SPEC, "num_classes": 3}))
    plan = FinetunePlan(frozen_stages=1, norm_eval=False, backbone_lr_mult=0.1)
    freeze(model, plan)
    set_train_mode(model, plan)
    assert not model.conv1.training and not model.conv2.training
    assert model.conv3.training and model.head.training
    set_train_mode(model, FinetunePlan(norm_eval=True))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert bns and not any(m.training for m in bns) and model.conv3.training
    groups = param_groups(model, 0.5, plan)
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 0.5), ("backbone", 0.05)]
    assert sum(p.numel() for g in groups for p in g["params"]) == freeze(model, plan)["trainable_params"]
    with pytest.raises(ValueError, match="frozen_stages"):
        TrainConfig(frozen_stages=5)
    with pytest.raises(ValueError, match="backbone_lr_mult"):
        TrainConfig(backbone_lr_mult=0)


def _train(data: Path, ckpt: Path, out: Path, **kw):
    cfg = TrainConfig(arch=None, finetune_from=str(ckpt), data=str(data), out=str(out), epochs=2,
                      batch_size=4, frames=8, size=32, scale_min=32, scale_max=32, lr=0.05,
                      warmup_epochs=0, threads=1, workers=0, eval_clips=1, progress=False,
                      tensorboard=False, cache_mb=64, **kw)
    return train(cfg)


def _split(sd: dict, prefixes: tuple[str, ...]) -> tuple[dict, dict]:
    inside = {k: v for k, v in sd.items() if k.startswith(prefixes)}
    return inside, {k: v for k, v in sd.items() if k not in inside}


def test_frozen_stages_and_norm_eval_leave_them_bit_identical(data, base_ckpt, tmp_path):
    before = read_checkpoint(base_ckpt)["model"]
    result = _train(data, base_ckpt, tmp_path / "run", frozen_stages=2, norm_eval=True)
    after = read_checkpoint(result["checkpoint"])["model"]
    frozen, rest = _split(after, ("conv1.", "conv2.", "conv3."))
    assert frozen and all(torch.equal(v, before[k]) for k, v in frozen.items())
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(after[k], before[k]) for k in stats)   # norm_eval: all BN
    changed = [k for k, v in rest.items() if k in before and v.is_floating_point()
               and not k.endswith(("running_mean", "running_var")) and not torch.equal(v, before[k])]
    assert any(k.startswith("conv4.") for k in changed) and any(k.startswith("conv5.") for k in changed)
    model = load_checkpoint(result["checkpoint"])[0]
    expect = sum(p.numel() for n, p in model.named_parameters()
                 if not n.startswith(("conv1.", "conv2.", "conv3.")))
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["trainable_params"] == expect and config["frozen_stages"] == 2
    assert config["total_params"] == sum(p.numel() for p in model.parameters())


def test_linear_probe_trains_only_the_head(data, base_ckpt, tmp_path):
    before = read_checkpoint(base_ckpt)["model"]
    result = _train(data, base_ckpt, tmp_path / "run", linear_probe=True, optimizer="adamw")
    after = read_checkpoint(result["checkpoint"])["model"]
    body, head = _split(after, ("head.",))[1], _split(after, ("head.",))[0]
    assert all(torch.equal(v, before[k]) for k, v in body.items())
    assert head and result["metrics"]["train_loss"] > 0
    start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["config"]["trainable_params"] == sum(v.numel() for v in head.values())


@pytest.fixture(scope="module")
def mm_import(tmp_path_factory) -> Path:
    """An ir-CSN-50 made and saved by mmaction2's own code (random weights and BN statistics,
    tests/test_convert_peers.py), converted with backend.convert."""
    import test_convert_peers as peers
    if peers.MM_MISSING:
        pytest.skip(f"mmaction2 not importable ({peers.MM_MISSING})")
    from backend.convert import convert_checkpoint
    d = tmp_path_factory.mktemp("mm")
    cfg = peers.mm_config(peers.R50)
    model, _ = peers.mm_build(cfg)
    convert_checkpoint(peers.mm_save(d / "csn.pth", model, cfg), d / "ircsn50.pt")
    return d / "ircsn50.pt"


@pytest.mark.slow
def test_an_mmaction2_import_finetunes_from_the_cli_with_frozen_stages(data, mm_import, tmp_path):
    """A checkpoint made by mmaction2's own code, converted, then fine-tuned by the CLI."""
    conv = mm_import
    before = read_checkpoint(conv)["model"]
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "backend.train", "--finetune-from", str(conv), "--data", str(data),
         "--out", str(out), "--epochs", "1", "--batch-size", "4", "--frames", "8", "--size", "32",
         "--scale-min", "32", "--scale-max", "32", "--max-steps-per-epoch", "2", "--threads", "1",
         "--workers", "0", "--eval-clips", "1", "--no-tensorboard", "--frozen-stages", "3",
         "--norm-eval", "--backbone-lr-mult", "0.1", "--lr", "0.01"],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = read_checkpoint(json.loads(proc.stdout.splitlines()[-1])["checkpoint"])
    frozen = [k for k in after["model"] if k.startswith(("conv1.", "conv2.", "conv3.", "conv4."))]
    assert frozen and all(torch.equal(after["model"][k], before[k]) for k in frozen)
    stats = [k for k in after["model"] if k.endswith(("running_mean", "running_var"))]
    assert all(torch.equal(after["model"][k], before[k]) for k in stats)
    assert not torch.equal(after["model"]["conv5.0.conv_a.conv.weight"], before["conv5.0.conv_a.conv.weight"])
    trained = load_checkpoint(json.loads(proc.stdout.splitlines()[-1])["checkpoint"])[0]
    want = sum(p.numel() for n, p in trained.named_parameters() if n.startswith(("conv5.", "head.")))
    assert after["config"]["trainable_params"] == want
    assert after["spec"]["input_mean"] == list(read_checkpoint(conv)["spec"]["input_mean"])


def _tiny_import(models: Path) -> Path:
    spec = ArchSpec.from_dict({**TINY_SPEC, "num_classes": 3, "frames": 8, "height": 32, "width": 32})
    path = models / "tiny-import.pt"
    save_atomic({"format": FORMAT, "model": _random_stats(build_model(spec), seed=1).state_dict(),
                 "spec": spec.to_dict(), "classes": ["left", "right", "up"]}, path)
    return path


@pytest.mark.parametrize("source", ["tiny", pytest.param("mmaction2", marks=pytest.mark.slow)])
def test_train_page_fine_tunes_an_imported_model_with_frozen_stages(source, tmp_path, monkeypatch,
                                                                    data, request):
    """The Train page offers an imported checkpoint (a tiny one; an mmaction2-made ir-CSN-50),
    counts what will train, and the run it enqueues trains with the worker's own flags
    (jobs.hparams) and freezes what it said."""
    import db
    from streamlit.testing.v1 import AppTest

    from app.finetune_form import SOURCE
    from backend.train import main
    from jobs import api
    from jobs.hparams import hparam_args

    var = tmp_path / "var"
    monkeypatch.setenv("CSN_DATA_DIR", str(var))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    db.dispose_engines()
    (var / "models").mkdir(parents=True)
    if source == "tiny":
        imported = _tiny_import(var / "models")
    else:
        imported = Path(shutil.copy(request.getfixturevalue("mm_import"), var / "models"))
    model = load_checkpoint(imported)[0]
    dataset = var / "videos"
    shutil.copytree(data, dataset)   # inside the data roots
    try:
        at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60).run()
        at.switch_page(str(REPO / "app" / "views" / "train.py")).run()
        at.radio(key="train_src").set_value(SOURCE).run()
        at.selectbox(key="train_ft_model").set_value(f"imported: {imported.name}").run()
        at.radio(key="train_dsrc").set_value("A folder or CSV on the server").run()
        at.text_input(key="train_path").set_value(str(dataset)).run()
        at.selectbox(key="hp_frozen_stages").set_value(1).run()
        at.checkbox(key="hp_norm_eval").check().run()
        at.number_input(key="hp_frames").set_value(8).run()
        at.number_input(key="hp_size").set_value(32).run()
        at.number_input(key="hp_epochs").set_value(1).run()
        assert not at.exception, at.exception
        # the classifier is rebuilt for the dataset's 3 classes
        total = _numel(model) - _numel(model.head) + (model.head.fc.in_features + 1) * 3
        trains = total - _numel(model.conv1) - _numel(model.conv2)
        want = f"{trains:,} of {total:,} parameters will train"
        assert any(want in c.value for c in at.caption), [c.value for c in at.caption]
        at.button[[b.label for b in at.button].index("Enqueue run")].click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        (run,) = api.list_runs()
        hp = run["hparams"]
        assert (hp["finetune_from"], hp["frozen_stages"], hp["norm_eval"]) == (str(imported), 1, True)
        (tmp_path / "spec.json").write_text(json.dumps(run["spec"]))
        out = tmp_path / "run"
        hp = {**hp, "max_steps_per_epoch": 2, "eval_clips": 1, "batch_size": 4}
        assert main(["--arch", str(tmp_path / "spec.json"), "--data", run["dataset"], "--out", str(out),
                     "--scale-min", "32", "--scale-max", "32", "--no-tensorboard",
                     *hparam_args(hp)]) == 0
        after = read_checkpoint(next((out / "checkpoints").glob("*.pt")))
        before = read_checkpoint(imported)["model"]
        kept = [k for k in after["model"] if k.startswith(("conv1.", "conv2.")) or k.endswith("running_mean")]
        assert kept and all(torch.equal(after["model"][k], before[k]) for k in kept)
        assert after["config"]["trainable_params"] == trains
    finally:
        db.dispose_engines()


def test_recipes_and_queued_hparams_carry_the_controls():
    from backend.train import config_from_args
    from jobs.hparams import hparam_args, validate_hparams
    hp = {"frozen_stages": 2, "norm_eval": True, "linear_probe": False, "backbone_lr_mult": 0.1}
    cfg = config_from_args(["--arch", "ir-csn-26", "--data", "d", "--out", "o", *hparam_args(hp)])
    assert (cfg.frozen_stages, cfg.norm_eval, cfg.linear_probe, cfg.backbone_lr_mult) == (2, True, False, 0.1)
    assert config_from_args(["--arch", "x", "--data", "d", "--out", "o", "--linear-probe"]).linear_probe
    with pytest.raises(ValueError, match="frozen_stages must be int"):
        validate_hparams({"frozen_stages": "2"})
