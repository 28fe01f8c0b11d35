"""backend.convert: real key layouts of VMZ (PyTorch + Caffe2), mmaction2, pytorchvideo.

Each test builds a small network the way that layout's owner builds it (tests/_reference_nets),
with random weights and BN statistics, converts its state dict and checks that our model
computes the same logits.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from backend.convert import ConvertError, convert_checkpoint, convert_state_dict, detect_layout, load_source, main
from backend.csn import ArchSpec, build_model

import _reference_nets as ref

X = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))


def ours_from(sd, layout="auto", **kw):
    spec, state, report = convert_state_dict(sd, layout, frames=8, size=32, **kw)
    model = build_model(spec).eval()
    model.load_state_dict(state)
    return model, spec, report


@pytest.mark.parametrize("ip", [False, True])
def test_vmz_torchvision_layout_same_function(ip):
    net = ref.randomize(ref.VmzNet(ip=ip))
    sd = net.state_dict()
    assert "stem.0.weight" in sd and "layer1.0.conv1.0.weight" in sd and "layer2.0.downsample.0.weight" in sd
    assert ("layer1.0.conv2.0.2.weight" in sd) == ip
    assert detect_layout(sd) == "vmz"
    model, spec, report = ours_from(sd)
    assert spec.stages[0].block == ("ip" if ip else "bottleneck-D")
    assert [s.blocks for s in spec.stages] == list(ref.BLOCKS)
    assert [s.inner for s in spec.stages] == list(ref.PLANES)
    assert spec.ip_relu is False and spec.num_classes == ref.CLASSES
    with torch.no_grad():
        torch.testing.assert_close(model(X), net(X), rtol=1e-4, atol=1e-4)
    assert not report.unexpected


def test_bn_eps_matters_and_is_folded():
    net = ref.randomize(ref.VmzNet())
    model, *_ = ours_from(net.state_dict(), bn_eps=1e-5)  # wrong eps: must differ
    with torch.no_grad():
        assert not torch.allclose(model(X), net(X), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("ip", [True, False])
def test_mmaction2_layout_same_function(ip):
    net = ref.randomize(ref.MmaRecognizer(ip=ip))
    sd = net.state_dict()
    assert "backbone.conv1.conv.weight" in sd and "cls_head.fc_cls.weight" in sd
    assert ("backbone.layer1.0.conv2.1.conv.weight" in sd) == ip
    assert "backbone.layer1.0.downsample.conv.weight" in sd
    model, spec, _ = ours_from(sd)
    assert spec.stages[0].block == ("ip" if ip else "bottleneck-D")
    with torch.no_grad():
        torch.testing.assert_close(model(X), net(X), rtol=1e-4, atol=1e-4)


def test_ip_relu_difference_is_real():
    net = ref.randomize(ref.MmaRecognizer(ip=True))
    model, *_ = ours_from(net.state_dict(), ip_relu=True)
    with torch.no_grad():
        assert not torch.allclose(model(X), net(X), rtol=1e-3, atol=1e-3)


def test_pytorchvideo_layout_same_function():
    net = ref.randomize(ref.PvNet())
    sd = net.state_dict()
    assert "blocks.0.conv.weight" in sd and "blocks.1.res_blocks.0.branch2.conv_a.weight" in sd
    assert "blocks.1.res_blocks.0.branch1_conv.weight" in sd and "blocks.5.proj.weight" in sd
    model, spec, report = ours_from(sd)
    assert detect_layout(sd) == "pytorchvideo" and spec.stages[3].block == "bottleneck-D"
    assert any("temporal strides (1, 2, 2, 1)" in n for n in report.notes)
    assert [s.temporal_stride for s in spec.stages] == [None, True, True, False]
    with torch.no_grad():  # 8 frames: conv5 sees 2, so its temporal stride matters
        torch.testing.assert_close(model(X), net(X), rtol=1e-4, atol=1e-4)
    wrong, *_ = ours_from(sd, temporal_stride=True)  # striding conv5 too is a different function
    with torch.no_grad():
        assert not torch.allclose(wrong(X), net(X), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("ip", [False, True])
def test_caffe2_blobs_pickle(tmp_path: Path, ip):
    net = ref.randomize(ref.VmzNet(ip=ip))
    blobs = ref.caffe2_blobs(net)
    blobs["model_iter"] = blobs["conv1_w"][:0]       # bookkeeping blobs are skipped
    blobs["comp_0_conv_1_w_momentum"] = blobs["comp_0_conv_1_w"]
    p = tmp_path / "c2.pkl"
    with open(p, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    sd = load_source(p)
    assert detect_layout(sd) == "caffe2"
    model, spec, _ = ours_from(sd)
    assert spec.stages[0].block == ("ip" if ip else "bottleneck-D")
    with torch.no_grad():
        torch.testing.assert_close(model(X), net(X), rtol=1e-4, atol=1e-4)


def test_checkpoint_roundtrip_cli_and_labels(tmp_path: Path, capsys):
    net = ref.randomize(ref.VmzNet())
    src = tmp_path / "vmz.pth"
    torch.save(net.state_dict(), src)
    out = tmp_path / "out.pt"
    assert main([str(src), "--out", str(out), "--frames", "8", "--size", "32"]) == 0
    assert "layout vmz" in capsys.readouterr().out
    ck = torch.load(out, weights_only=True)
    assert ck["format"] == "csn-explorer/1" and len(ck["classes"]) == ref.CLASSES
    spec = ArchSpec.from_dict(ck["spec"])
    model = build_model(spec).eval()
    model.load_state_dict(ck["model"])
    with torch.no_grad():
        torch.testing.assert_close(model(X), net(X), rtol=1e-4, atol=1e-4)

    # per-stage temporal strides from the command line; a malformed list is refused by name
    out2 = tmp_path / "out2.pt"
    assert main([str(src), "--out", str(out2), "--frames", "8", "--size", "32",
                 "--temporal-stride", "yes,yes,no"]) == 0
    spec2 = ArchSpec.from_dict(torch.load(out2, weights_only=True)["spec"])
    assert [s.temporal_stride for s in spec2.stages] == [None, True, True, False]
    with pytest.raises(SystemExit):
        main([str(src), "--out", str(out2), "--temporal-stride", "yes,no"])
    assert "expected yes, no or three of them" in capsys.readouterr().err


def test_kinetics_labels_shipped():
    lines = (Path(__file__).parents[1] / "backend/assets/kinetics400_labels.txt").read_text().splitlines()
    assert len(lines) == 400 == len(set(lines))
    assert lines[0] == "abseiling" and lines[-1] == "zumba" and "passing American football (in game)" in lines
    assert [l.lower() for l in lines] == sorted(l.lower() for l in lines)


def test_refuses_unsafe_pickle(tmp_path: Path):
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": Path("/etc")}, p)  # a non-tensor class
    with pytest.raises(ConvertError, match="weights_only"):
        load_source(p)
    with pytest.raises(ConvertError, match="no such file"):
        load_source(tmp_path / "nope.pt")


def test_shape_mismatch_and_missing_are_reported():
    sd = ref.randomize(ref.VmzNet()).state_dict()
    bad = dict(sd)
    bad["layer1.0.conv3.1.running_mean"] = torch.zeros(7)
    with pytest.raises(ConvertError, match=r"conv2\.0\.conv_c\.bn\.running_mean.*\(7,\)"):
        ours_from(bad)
    missing = {k: v for k, v in sd.items() if not k.startswith("layer3.0.conv2.1.")}
    with pytest.raises(ConvertError, match=r"conv4_1\.conv_b: BN"):
        ours_from(missing)
    with pytest.raises(ConvertError, match="cannot tell the checkpoint layout"):
        convert_state_dict({"foo.weight": torch.zeros(1)})
    extra = dict(sd, **{"layer9.weird": torch.zeros(1)})
    _, _, rep = ours_from(extra)
    assert rep.unexpected == ["layer9.weird"]
    with pytest.raises(ConvertError, match="unexpected source key"):
        ours_from(extra, strict=True)


def test_convert_checkpoint_rejects_wrong_label_count(tmp_path: Path):
    src = tmp_path / "m.pth"
    torch.save(ref.randomize(ref.MmaRecognizer()).state_dict(), src)
    with pytest.raises(ConvertError, match="3 class names for 10 outputs"):
        convert_checkpoint(src, tmp_path / "o.pt", classes=["a", "b", "c"], frames=8, size=32)
