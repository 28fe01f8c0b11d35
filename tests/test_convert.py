"""backend.convert on VMZ's layouts (PyTorch + Caffe2), written out from VMZ's source in
tests/helpers/reference_nets.py, and the converter's refusals. pytorchvideo and mmaction2 are checked
with their own packages in tests/test_convert_peers.py.
"""
from __future__ import annotations

import argparse
import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import tests.helpers.reference_nets as ref
from backend.training.checkpoint import load_checkpoint
from backend.convert import (ConvertError, Source, convert_checkpoint, convert_state_dict, detect_layout, load_source,
                             main, mmaction2_facts)
from backend.csn import build_model

X = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
X_OWN = torch.randn(1, 3, 32, 224, 224, generator=torch.Generator().manual_seed(2))  # VMZ's 32x224 clip


def ours_from(sd, layout="auto", file="", **kw):
    kw.setdefault("frames", 8)
    kw.setdefault("size", 32)
    spec, state, report = convert_state_dict(Source(dict(sd), name=file), layout, **kw)
    model = build_model(spec).eval()
    model.load_state_dict(state)
    return model, spec, report


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ip", [False, True])
def test_vmz_pytorch_same_function(ip):
    net = ref.randomize(ref.VmzNet(ip=ip))
    sd = net.state_dict()
    assert ("layer1.0.conv2.0.2.weight" in sd) == ip and detect_layout(sd) == "vmz"
    model, spec, report = ours_from(sd, pool1=True)
    assert spec.stages[0].block == ("ip" if ip else "bottleneck-D")
    assert [s.blocks for s in spec.stages] == list(ref.BLOCKS) and [s.inner for s in spec.stages] == list(ref.PLANES)
    assert spec.ip_relu is False and spec.input_mean == (0.43216, 0.394666, 0.37645)
    assert report.facts["pool1"].source == "flag --pool1" and "_generic_resnet" in report.facts["bn_eps"].source
    with torch.no_grad():
        close(model(X), net(X))
        close(model(X_OWN), net(X_OWN))


def test_vmz_pool1_is_never_guessed():
    """VMZ's use_pool1=False leaves no trace in the weights: the file must say it, or a flag."""
    net = ref.randomize(ref.VmzNet(use_pool1=False))
    with pytest.raises(ConvertError, match=r"--pool1 yes\|no .*use_pool1.*--model ir_csn_152\|ip_csn_152"):
        ours_from(net.state_dict())
    model, *_ = ours_from(net.state_dict(), pool1=False)
    wrong, *_ = ours_from(net.state_dict(), pool1=True)
    with torch.no_grad():
        close(model(X), net(X))
        assert not torch.allclose(wrong(X), net(X), rtol=1e-3, atol=1e-3)


def test_vmz_published_name_says_pool1_and_is_checked():
    sd = ref.randomize(ref.VmzNet()).state_dict()
    with pytest.raises(ConvertError, match=r"model ir_csn_152 has blocks \(3, 8, 36, 3\), the weights \(2, 2, 1, 1\)"):
        ours_from(sd, file="irCSN_152_ig65m_from_scratch_f125286141.pth")
    with pytest.raises(ConvertError, match="not a vmz model"):
        ours_from(sd, model="csn_r101")


def test_bn_eps_matters_and_is_folded():
    net = ref.randomize(ref.VmzNet())
    model, *_ = ours_from(net.state_dict(), pool1=True, bn_eps=1e-5)  # wrong eps: must differ
    with torch.no_grad():
        assert not torch.allclose(model(X), net(X), rtol=1e-3, atol=1e-3)


def test_ip_relu_difference_is_real():
    net = ref.randomize(ref.VmzNet(ip=True))
    model, *_ = ours_from(net.state_dict(), pool1=True, ip_relu=True)
    with torch.no_grad():
        assert not torch.allclose(model(X), net(X), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("ip", [False, True])
def test_caffe2_blob_pickle_by_published_name(tmp_path: Path, ip):
    """ip-CSN's extra 1x1x1 conv is comp_N_conv_2_middle: it must land in the model, not be dropped."""
    net = ref.randomize(ref.VmzNet(ip=ip))
    blobs = ref.caffe2_blobs(net)
    assert ("comp_0_conv_2_middle_w" in blobs) == ip and ("comp_0_conv_4_w" in blobs) == (not ip)
    blobs["model_iter"] = np.zeros(1, np.int64)            # bookkeeping blobs are skipped
    blobs["comp_0_conv_1_w_momentum"] = blobs["comp_0_conv_1_w"]
    p = tmp_path / f"{'ip' if ip else 'ir'}CSN_152_ft_kinetics_from_ig65m_f133090949.pkl"
    with open(p, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    src = load_source(p)
    assert detect_layout(src.tensors) == "caffe2"
    spec, state, report = convert_state_dict(src, frames=8, size=32)
    assert report.model == "c2_csn" and spec.pool1 and spec.stages[0].block == ("ip" if ip else "bottleneck-D")
    assert "test_irCSN_152_kinetics.sh" in report.facts["pool1"].source
    model = build_model(spec).eval()
    model.load_state_dict(state)
    with torch.no_grad():
        close(model(X), net(X))
        close(model(X_OWN), net(X_OWN))


def test_caffe2_short_clip_follows_create_r3d():
    """create_r3d strides conv_5x in time only for clips of 8+ frames."""
    blobs = {k: torch.as_tensor(v) for k, v in ref.caffe2_blobs(ref.randomize(ref.VmzNet())).items()}
    _, spec, report = ours_from(blobs, pool1=True, frames=4)
    assert [s.temporal_stride for s in spec.stages[1:]] == [True, True, False]
    assert "create_r3d" in report.facts["temporal_stride"].source


def test_unmapped_keys_are_errors_unless_ignored():
    sd = dict(ref.randomize(ref.VmzNet()).state_dict())
    sd["layer9.weird"] = torch.zeros(1)
    with pytest.raises(ConvertError, match=r"1 source tensor\(s\) have no place .*layer9.weird.*--ignore"):
        ours_from(sd, pool1=True)
    _, _, rep = ours_from(sd, pool1=True, ignore=(r"^layer9\.",))
    assert rep.ignored == ["layer9.weird"] and "dropped 1 source key" in rep.summary()


def test_cli_records_and_prints_every_fact(tmp_path: Path, capsys):
    net = ref.randomize(ref.VmzNet())
    src = tmp_path / "vmz.pth"
    torch.save(net.state_dict(), src)
    out = tmp_path / "out.pt"
    assert main([str(src), "--out", str(out), "--frames", "8", "--size", "32"]) == 2
    assert "--pool1 yes|no" in capsys.readouterr().err and not out.exists()
    assert main([str(src), "--out", str(out), "--frames", "8", "--size", "32", "--pool1", "yes",
                 "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--input-order", "BGR"]) == 0
    printed = capsys.readouterr().out
    assert "layout vmz" in printed and "pool1 = True  [flag --pool1]" in printed
    assert "bn_eps = 0.001  [VMZ pt/vmz/models/utils.py _generic_resnet" in printed
    model, spec, classes, ck = load_checkpoint(out)
    assert ck["config"]["facts"]["pool1"] == {"value": True, "source": "flag --pool1"}
    assert spec.input_mean == (0.5,) * 3 and spec.input_order == "BGR" and len(classes) == ref.CLASSES
    with torch.no_grad():
        close(model(X), net(X))
    with pytest.raises(SystemExit):
        main([str(src), "--out", str(out), "--temporal-stride", "yes,no"])
    assert "expected one or 3 comma-separated values" in capsys.readouterr().err


def test_predictor_normalises_as_the_spec_says(tmp_path: Path):
    from backend.inference.predictor import Predictor
    from backend.data.video import MEAN, STD, Norm, test_clips
    from tests.helpers.motion_data import motion_video
    src = tmp_path / "vmz.pth"
    torch.save(ref.randomize(ref.VmzNet()).state_dict(), src)
    out = tmp_path / "out.pt"
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    convert_checkpoint(src, out, pool1=True, frames=8, size=32, input_mean=mean, input_std=std,
                       input_order="BGR")
    video = motion_video(tmp_path / "v.mp4", "left", np.random.default_rng(0))
    pr = Predictor(out)
    assert pr.norm == Norm(mean, std, "BGR")
    x = pr.clips(video)
    rgb = test_clips(video, frames=8, rate=2, size=32, num_clips=1) * torch.tensor(STD).view(3, 1, 1, 1) \
        + torch.tensor(MEAN).view(3, 1, 1, 1)                      # back to 0-1 pixels, RGB
    want = (rgb.flip(1) - torch.tensor(mean).view(3, 1, 1, 1)) / torch.tensor(std).view(3, 1, 1, 1)
    torch.testing.assert_close(x, want, rtol=1e-5, atol=1e-5)


def test_old_imported_checkpoint_keeps_its_config_normalisation(tmp_path: Path):
    """Checkpoints converted before the spec held mean/std kept them in config."""
    src, out = tmp_path / "vmz.pth", tmp_path / "out.pt"
    torch.save(ref.randomize(ref.VmzNet()).state_dict(), src)
    convert_checkpoint(src, out, pool1=True, frames=8, size=32)
    ck = torch.load(out, weights_only=True)
    for k in ("input_mean", "input_std", "input_order"):
        del ck["spec"][k]
    ck["config"].update(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    torch.save(ck, out)
    _, spec, _, _ = load_checkpoint(out)
    assert spec.input_mean == (0.485, 0.456, 0.406) and spec.input_std == (0.229, 0.224, 0.225)


def test_kinetics_labels_shipped():
    lines = (Path(__file__).parents[1] / "backend/assets/kinetics400_labels.txt").read_text().splitlines()
    assert len(lines) == 400 == len(set(lines))
    assert lines[0] == "abseiling" and lines[-1] == "zumba" and "passing American football (in game)" in lines
    assert [l.lower() for l in lines] == sorted(l.lower() for l in lines)


def test_refuses_unsafe_pickle_naming_the_class(tmp_path: Path):
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": Path("/etc")}, p)  # a non-tensor class
    with pytest.raises(ConvertError, match=r"weights_only=True\) \(it pickles pathlib"):
        load_source(p)
    with pytest.raises(ConvertError, match="no such file"):
        load_source(tmp_path / "nope.pt")


def test_shape_mismatch_and_missing_are_reported():
    sd = ref.randomize(ref.VmzNet()).state_dict()
    bad = dict(sd)
    bad["layer1.0.conv3.1.running_mean"] = torch.zeros(7)
    with pytest.raises(ConvertError, match=r"conv2\.0\.conv_c\.bn\.running_mean.*\(7,\)"):
        ours_from(bad, pool1=True)
    missing = {k: v for k, v in sd.items() if not k.startswith("layer3.0.conv2.1.")}
    with pytest.raises(ConvertError, match=r"conv4_1\.conv_b: BN"):
        ours_from(missing, pool1=True)
    with pytest.raises(ConvertError, match="cannot tell the checkpoint layout"):
        convert_state_dict({"foo.weight": torch.zeros(1)})


def test_convert_checkpoint_rejects_wrong_label_count(tmp_path: Path):
    src = tmp_path / "m.pth"
    torch.save(ref.randomize(ref.VmzNet()).state_dict(), src)
    with pytest.raises(ConvertError, match="3 class names for 10 outputs"):
        convert_checkpoint(src, tmp_path / "o.pt", classes=["a", "b", "c"], pool1=True, frames=8, size=32)


def test_two_keys_for_one_tensor_are_an_error(tmp_path: Path):
    """Neither copy may win silently; --ignore picks one."""
    blobs = {k: torch.as_tensor(v) for k, v in ref.caffe2_blobs(ref.randomize(ref.VmzNet())).items()}
    blobs["last_out_L487_w"], blobs["last_out_L487_b"] = blobs["last_out_L10_w"] * 2, blobs["last_out_L10_b"]
    with pytest.raises(ConvertError, match=r"last_out_L10_w and last_out_L487_w both map .*--ignore"):
        ours_from(blobs, pool1=True)
    _, _, rep = ours_from(blobs, pool1=True, ignore=("^last_out_L487_",))
    assert rep.ignored == ["last_out_L487_b", "last_out_L487_w"]
    sd = dict(ref.randomize(ref.VmzNet()).state_dict())
    p = tmp_path / "dp.pth"
    torch.save({**sd, "module.fc.weight": sd["fc.weight"] * 2}, p)  # a DataParallel copy next to the plain one
    with pytest.raises(ConvertError, match=r"'fc.weight' and 'module.fc.weight' both name tensor 'fc.weight'"):
        load_source(p)


def test_ignore_drops_mapped_keys_too():
    """--ignore drops what it names, even keys with a place; the model then lacks them."""
    sd = ref.randomize(ref.VmzNet()).state_dict()
    with pytest.raises(ConvertError, match=r"classifier weight/bias not found \(--ignore dropped 2 key\(s\) "
                                           r"that map into the model: fc.bias, fc.weight\)"):
        ours_from(sd, pool1=True, ignore=(r"^fc\.",))
    with pytest.raises(ConvertError, match=r"conv2_1.conv_b: BN \['var'\] missing.*--ignore dropped 1 key"):
        ours_from(sd, pool1=True, ignore=(r"^layer1\.0\.conv2\.1\.running_var",))
    with pytest.raises(ConvertError, match=r"--ignore '\(fc' is not a regular expression"):
        ours_from(sd, pool1=True, ignore=("(fc",))


def test_old_format_file_keeps_torch_refusal(tmp_path: Path):
    p = tmp_path / "old.pth"
    torch.save({"state_dict": dict(ref.randomize(ref.VmzNet()).state_dict()), "args": argparse.Namespace(lr=0.1)},
               p, _use_new_zipfile_serialization=False)
    with pytest.raises(ConvertError, match=r"weights_only=True\) \(it pickles argparse.Namespace\)"):
        load_source(p)


MM_CFG = {"model": {"backbone": {"type": "ResNet3dCSN", "norm_cfg": {"type": "BN3d", "eps": 1e-3}},
                    "data_preprocessor": {"format_shape": "NCTHW", "mean": [1, 2, 3], "std": [4, 5, 6]}},
          "test_pipeline": [{"type": "SampleFrames", "clip_len": 32, "frame_interval": 2},
                            {"type": "CenterCrop", "crop_size": 224}]}


def _mm_facts(edit):
    def run(_tmp):
        cfg = copy.deepcopy(MM_CFG)
        edit(cfg)
        return mmaction2_facts(Source({}, {"cfg": "\n".join(f"{k} = {v!r}" for k, v in cfg.items())}))
    return run


def _object_blob(tmp: Path):
    src = tmp / "blobs.pkl"
    with open(src, "wb") as f:
        pickle.dump({"blobs": {"conv1_w": np.array(["SECRET", 1], dtype=object)}}, f, protocol=2)
    return load_source(src)


@pytest.mark.parametrize("field, run", [
    ("model.backbone.norm_cfg", _mm_facts(lambda c: c["model"]["backbone"].update(norm_cfg="SECRET"))),
    ("model.backbone.norm_cfg.eps", _mm_facts(lambda c: c["model"]["backbone"]["norm_cfg"].update(eps="SECRET"))),
    ("model.data_preprocessor std", _mm_facts(lambda c: c["model"]["data_preprocessor"].pop("std"))),
    ("model.data_preprocessor mean", _mm_facts(lambda c: c["model"]["data_preprocessor"].update(mean="SECRET"))),
    ("test_pipeline SampleFrames.clip_len", _mm_facts(lambda c: c["test_pipeline"][0].pop("clip_len"))),
    ("test_pipeline CenterCrop.crop_size", _mm_facts(lambda c: c["test_pipeline"][1].update(crop_size=["SECRET"]))),
    ("array 'conv1_w' has dtype object", _object_blob),
])
def test_bad_values_are_errors_naming_the_field(tmp_path: Path, field, run):
    """A ConvertError (the CLI's ``error: ...``, exit 2) naming the field, never its value."""
    facts = _mm_facts(lambda c: None)(tmp_path)
    assert facts["bn_eps"].value == 1e-3 and facts["input_std"].value == (4 / 255, 5 / 255, 6 / 255)
    with pytest.raises(ConvertError) as e:
        run(tmp_path)
    assert field in str(e.value) and "SECRET" not in str(e.value)
