"""backend.convert against the peers' own code: pytorchvideo 0.1.5 and mmaction2 1.2.0 build
their models with their own constructors and configs (random weights, random BN statistics),
save them the way each project distributes weights, and the converted model must give the
same logits (<= 1e-4 relative) at 8x112x112 and at the checkpoint's own 32x224x224 clip, or
the conversion must fail naming what it could not map. Skipped when a peer is not importable;
`make test` installs both (requirements-peers.txt).
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import tests.helpers.peer_stubs as _peer_stubs
from backend.convert import ConvertError, convert_checkpoint, load_source
from backend.training.checkpoint import load_checkpoint
from backend.csn import SpecError, count

pytestmark = [pytest.mark.slow, *(pytest.mark.filterwarnings(f"ignore::{w}") for w in  # the peers' own
              ("UserWarning", "DeprecationWarning", "FutureWarning", "torch.jit.TracerWarning"))]
PV_MISSING = _peer_stubs.import_peer("pytorchvideo.models.csn", "pytorchvideo.models.hub.csn", "fvcore.nn")
MM_MISSING = _peer_stubs.import_peer("mmengine.config", "mmaction.registry", "mmaction.models")
needs_pv = pytest.mark.skipif(bool(PV_MISSING), reason=f"pytorchvideo 0.1.5 not importable ({PV_MISSING}); make peers")
needs_mm = pytest.mark.skipif(bool(MM_MISSING), reason=f"mmaction2 1.2.0 not importable ({MM_MISSING}); make peers")
SMALL, BIG = (1, 3, 8, 112, 112), (1, 3, 32, 224, 224)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random conv/fc weights and BN affine + running statistics, scaled to keep deep nets finite."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            m.weight.data = torch.randn(m.weight.shape, generator=g) / math.sqrt(m.weight[0].numel())
            if m.bias is not None:
                m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.weight.data = 0.3 + 0.7 * torch.rand(c, generator=g)
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = 0.01 + torch.rand(c, generator=g)
    return model.eval()


def same_function(peer, path: Path, shapes, **kw):
    """Convert ``path``, then compare logits with ``peer`` at each input shape."""
    out = path.with_suffix(".converted.pt")
    report = convert_checkpoint(path, out, **kw)
    ours, spec, _, _ = load_checkpoint(out)
    for i, shape in enumerate(shapes):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            want, got = peer(x), ours(x)
        rel = ((got - want).abs().max() / want.abs().max()).item()
        assert rel <= 1e-4, f"{shape}: relative logit error {rel:.2e}"
    return spec, report


# --- pytorchvideo ---------------------------------------------------------------------------

@needs_pv
@pytest.mark.parametrize("depth", [50, 152])  # 101 differs from these only in conv4's block count
def test_pytorchvideo_create_csn(tmp_path: Path, depth):
    from pytorchvideo.models.csn import create_csn
    peer = randomize(create_csn(model_depth=depth, model_num_class=10))
    path = tmp_path / f"my_csn_{depth}.pyth"
    torch.save({"model_state": peer.state_dict()}, path)            # pytorchvideo's checkpoint dict
    with pytest.raises(ConvertError, match=r"--pool1 yes\|no .*--head-pool T,H,W .*--model csn_r101\|create_csn"):
        convert_checkpoint(path, tmp_path / "x.pt")
    spec, report = same_function(peer, path, [SMALL], model="create_csn", frames=8, size=112)
    # create_csn: stage_temporal_stride (1, 2, 2, 2), no stem pool, stride-1 (1, 7, 7) head pool
    assert [s.temporal_stride for s in spec.stages[1:]] == [True, True, True]
    assert not spec.pool1 and spec.head == "conv" and spec.head_pool == (1, 7, 7)
    assert any("guessed" in w for w in report.warnings)  # normalisation: the file does not say


@needs_pv
def test_pytorchvideo_hub_csn_r101_at_its_own_clip_and_fvcore_count(tmp_path: Path):
    """The hub's CSN_32x2_R101 needs no flags; its head window (4, 7, 7) only fits 32x224 clips."""
    from fvcore.nn import FlopCountAnalysis
    from pytorchvideo.models.hub.csn import csn_r101
    peer = randomize(csn_r101(pretrained=False))
    path = tmp_path / "CSN_32x2_R101.pyth"
    torch.save({"model_state": peer.state_dict()}, path)
    spec, report = same_function(peer, path, [BIG])
    assert report.model == "csn_r101" and spec.pool1 and spec.head_pool == (4, 7, 7)
    assert spec.clip == (32, 224, 224) and spec.input_mean == (0.45,) * 3 and not report.warnings
    clips = report.facts["clip_range"].value             # recorded in the checkpoint's facts
    assert clips["min_frames"] <= 32 and clips["min_size"] <= 224 and clips["min_frames"] > 8
    with pytest.raises(SpecError, match=r"head_pool: \(4, 7, 7\) is larger than conv5's output \(1, 7, 7\)"):
        count(replace(spec, frames=8))                    # fvcore and the peer refuse 8x224 too
    flops = FlopCountAnalysis(peer, torch.zeros(BIG))
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    assert count(spec).totals.flops == by_op["conv"] + by_op["linear"]  # multiply-adds


# --- mmaction2 ------------------------------------------------------------------------------

def mm_config(name: str, **backbone):
    """A published mmaction2 CSN config (shipped in the wheel), backbone fields overridden."""
    import mmaction
    from mmengine.config import Config
    cfg = Config.fromfile(str(Path(mmaction.__file__).parent / ".mim/configs/recognition/csn" / name))
    cfg.model.backbone.pretrained = None
    cfg.model.backbone.update(backbone)
    cfg.model.cls_head.num_classes = 10
    return cfg


def mm_build(cfg):
    from mmaction.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope("mmaction")
    model = randomize(MODELS.build(cfg.model))
    return model, lambda x: model(x.unsqueeze(1), mode="tensor", stage="head")  # Recognizer3D: raw logits


def mm_save(path: Path, model, cfg, *, training: bool = False, old_format: bool = False) -> Path:
    """As mmengine's Runner.save_checkpoint writes it (``old_format``: as torch < 1.6 did);
    published files drop the training state (mmaction2 tools/deployment/publish_model.py)."""
    ckpt = {"meta": {"cfg": cfg.pretty_text, "seed": 0, "experiment_name": "t", "epoch": 58, "iter": 1},
            "state_dict": model.state_dict()}
    if training:
        from mmengine.logging import MessageHub
        hub = MessageHub.get_instance("convert-test")
        hub.update_scalar("train/loss", 1.0)
        ckpt["message_hub"] = hub.state_dict()
    torch.save(ckpt, path, _use_new_zipfile_serialization=not old_format)
    return path


R50 = "ircsn_ig65m-pretrained-r50-bnfrozen_8xb12-32x2x1-58e_kinetics400-rgb.py"
SPORTS_IP = "ipcsn_sports1m-pretrained-r152-bnfrozen_32x2x1-58e_kinetics400-rgb.py"


@needs_mm
@pytest.mark.parametrize("name, backbone", [
    (R50, {}),                                                      # ir, norm_eval + bn_frozen
    (SPORTS_IP, {"depth": 50}),                                     # ip, VMZ mean/std
    ("ircsn_r152_32x2x1-180e_kinetics400-rgb.py", {"depth": 50}),  # from scratch, VMZ mean/std
])
def test_mmaction2_published_configs(tmp_path: Path, name, backbone):
    cfg = mm_config(name, **backbone)
    model, peer = mm_build(cfg)
    path = mm_save(tmp_path / "csn.pth", model, cfg)
    spec, report = same_function(peer, path, [SMALL])
    pre = cfg.model.data_preprocessor
    assert spec.input_mean == tuple(m / 255 for m in pre.mean) and spec.input_order == "RGB"
    assert spec.pool2 is False and spec.clip == (32, 224, 224) and not report.warnings
    assert "meta['cfg']" in report.facts["pool2"].source and report.facts["rate"].value == 2


@pytest.fixture(scope="module")
def r50():
    """mmaction2's ir-CSN-50 (IG-65M config) built once: (config, model, logits function)."""
    cfg = mm_config(R50)
    return (cfg, *mm_build(cfg))


@needs_mm
def test_mmaction2_at_its_own_clip(tmp_path: Path, r50):
    cfg, model, peer = r50
    same_function(peer, mm_save(tmp_path / "csn.pth", model, cfg), [BIG])


@needs_mm
def test_mmaction2_with_pool2_and_bgr(tmp_path: Path):
    cfg = mm_config(R50, with_pool2=True)
    cfg.model.data_preprocessor.to_rgb = True
    model, peer = mm_build(cfg)
    spec, report = same_function(peer, mm_save(tmp_path / "csn.pth", model, cfg), [SMALL, (1, 3, 16, 112, 112)])
    assert spec.pool2 and spec.input_order == "BGR"


@needs_mm
def test_mmaction2_without_its_config_asks_for_pool2(tmp_path: Path, r50):
    _, model, peer = r50
    path = tmp_path / "bare.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(ConvertError, match=r"--pool2 yes\|no \(mmaction2 ResNet3d with_pool2"):
        convert_checkpoint(path, tmp_path / "x.pt")
    spec, report = same_function(peer, path, [SMALL], pool2=False)
    assert any("input normalisation guessed" in w for w in report.warnings)


@needs_mm
def test_mmaction2_unmappable_config_and_training_checkpoint(tmp_path: Path, r50):
    cfg, model, _ = r50
    odd = mm_config(R50, spatial_strides=(1, 2, 2, 1))  # same tensors, a function we cannot express
    with pytest.raises(ConvertError, match=r"model.backbone.spatial_strides=\[1, 2, 2, 1\] is not expressible"):
        convert_checkpoint(mm_save(tmp_path / "s.pth", model, odd), tmp_path / "x.pt")
    raw = mm_save(tmp_path / "epoch_58.pth", model, cfg, training=True)
    with pytest.raises(ConvertError, match=r"mmengine.logging.history_buffer.HistoryBuffer.*"
                                           r"publish_model.py epoch_58.pth epoch_58_published.pth"):
        load_source(raw)
    old = mm_save(tmp_path / "epoch_1.pth", model, cfg, training=True, old_format=True)
    with pytest.raises(ConvertError, match=r"pickles mmengine.*publish_model.py epoch_1.pth"):
        load_source(old)
