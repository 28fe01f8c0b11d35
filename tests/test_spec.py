"""Spec round-trips, presets and overrides, and validation messages."""
import json
import subprocess
import sys

from dataclasses import replace

import pytest
import torch

from backend.csn import ArchSpec, SpecError, build_model, count, list_presets, plan, preset


@pytest.mark.parametrize("name", list_presets())
def test_json_round_trip(name):
    spec = preset(name)
    again = ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert ArchSpec.from_json(spec.to_json()) == spec


def test_registry_names():
    names = set(list_presets())
    for d in (18, 26, 34, 50, 101, 152):
        assert f"resnet3d-{d}" in names
    for d in (26, 50, 101, 152):
        assert {f"ir-csn-{d}", f"ip-csn-{d}"} <= names
    for n in (8, 16):
        for x in ("", "G-", "D-"):
            assert f"simple-{x}{n}" in names
        for x in ("", "G-", "D-", "DG-"):
            assert f"bottleneck-{x}{n}" in names


def test_depths_and_table3_names():
    assert preset("resnet3d-50").depth == 50
    assert preset("ir-csn-152").depth == 152
    assert preset("ip-csn-26").depth == 26
    # Table 3: simple-8 is ResNet3D-18, bottleneck-16 is ResNet3D-50
    assert count(preset("simple-8")).totals == count(preset("resnet3d-18")).totals
    assert count(preset("bottleneck-16")).totals == count(preset("resnet3d-50")).totals


def test_overrides():
    s = preset("bottleneck-G-16", groups=8, frames=16, num_classes=10)
    assert all(st.groups == 8 for st in s.stages) and s.frames == 16 and s.num_classes == 10
    s = preset("resnet3d-50", stage_overrides={1: {"block": "ir", "blocks": 2}})
    assert s.stages[1].block == "ir" and s.stages[1].blocks == 2 and s.stages[0].block == "bottleneck"
    assert count(s).totals.flops < count(preset("resnet3d-50")).totals.flops
    # ir is an alias of bottleneck-D
    assert count(preset("resnet3d-50", block="ir")).totals == count(preset("ir-csn-50")).totals


def test_groups_reduce_cost_as_eq_1_to_3_say():
    a = count(preset("bottleneck-G-16", groups=2))
    b = count(preset("bottleneck-G-16", groups=4))
    la = {l.name: l for l in a.layers}
    lb = {l.name: l for l in b.layers}
    conv_b = "conv3_1.conv_b"
    assert la[conv_b].params == 2 * lb[conv_b].params
    assert la[conv_b].flops == 2 * lb[conv_b].flops
    # C_out * C(C_in/G, 2): 128 * C(64, 2) vs 128 * C(32, 2)
    assert la[conv_b].interactions == 128 * 64 * 63 // 2
    assert lb[conv_b].interactions == 128 * 32 * 31 // 2
    # depthwise: no interactions
    ir = {l.name: l for l in count(preset("ir-csn-50")).layers}
    assert ir["conv3_1.conv_b"].interactions == 0 and ir["conv3_1.conv_b"].kind == "depthwise"


def test_simple_d_adds_pointwise_only_when_channels_change():
    names = [l.name for l in count(preset("simple-D-8")).layers]
    assert "conv3_1.conv_a_pw" in names and "conv3_2.conv_a_pw" not in names
    assert "conv2_1.conv_a_pw" not in names  # 64 -> 64


@pytest.mark.parametrize("spec_kw,message", [
    (dict(name="bottleneck-G-16", groups=3), "conv2_1.conv_b: 64 channels are not divisible by 3 groups"),
    (dict(name="resnet3d-50", stage_overrides={1: {"block": "bottleneck-G", "groups": 3}}),
     "conv3_1.conv_b: 128 channels are not divisible by 3 groups"),
    (dict(name="bottleneck-DG-16", pw_groups=3), "conv2_1.conv_a: 64 channels are not divisible by 3 groups"),
    (dict(name="ir-csn-50", frames=4), "conv5_1.conv_b: temporal input size 1 is smaller than its stride 2"),
    (dict(name="ir-csn-50", frames=0), "frames: must be a positive integer, got 0"),
    (dict(name="ir-csn-50", stage_overrides={2: {"width": -4}}), "conv4_x.width: must be a positive integer"),
    (dict(name="ir-csn-50", groups=4), "conv2_x.groups: groups=4 applies only to simple-G and bottleneck-G"),
    (dict(name="ir-csn-50", block="bogus"), "unknown block type 'bogus'"),
    (dict(name="ir-csn-50", height=16, width=16), "conv5_1.conv_b: height input size 1 is smaller than its stride 2"),
    (dict(name="ir-csn-50", head="mlp"), "head: must be one of"),
    (dict(name="ir-csn-50", stage_overrides={0: {"temporal_stride": True}}),
     "conv2_x.temporal_stride: conv2 does not downsample"),
    (dict(name="ir-csn-50", frames=4, stage_overrides={3: {"temporal_stride": True}}),
     "conv5_1.conv_b: temporal input size 1 is smaller than its stride 2"),
    (dict(name="nope"), "unknown preset 'nope'"),
    (dict(name="ir-csn-50", input_order="YUV"), "input_order: must be one of"),
    (dict(name="ir-csn-50", input_std=(0.2, 0.0, 0.2)), "input_std: must be positive numbers"),
    (dict(name="ir-csn-50", input_mean=(0.4, 0.4)), "input_mean: must be numbers"),
    (dict(name="ir-csn-50", frames=8, pool2=True), "conv5_1.conv_b: temporal input size 1 is smaller"),
])
def test_validation_messages(spec_kw, message):
    kw = dict(spec_kw)
    name = kw.pop("name")
    with pytest.raises(SpecError) as e:
        spec = preset(name, **kw)
        spec.validate()
    assert message in str(e.value)
    assert "Traceback" not in str(e.value)


def test_build_model_validates_before_torch():
    spec = preset("bottleneck-G-16", groups=3)
    with pytest.raises(SpecError, match="conv2_1.conv_b"):
        build_model(spec)


def test_from_dict_rejects_unknown_fields():
    d = preset("ir-csn-26").to_dict()
    d["stagez"] = []
    with pytest.raises(SpecError, match="unknown spec field"):
        ArchSpec.from_dict(d)
    d = preset("ir-csn-26").to_dict()
    d["stages"][0]["grups"] = 2
    with pytest.raises(SpecError, match="unknown stage field"):
        ArchSpec.from_dict(d)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "backend.count", *args], capture_output=True, text=True)


def test_cli_json():
    r = run_cli("ir-csn-152", "--frames", "32", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) == {"spec", "unit", "totals", "layers"}
    assert d["spec"]["frames"] == 32
    assert f"{d['totals']['flops'] / 1e9:.1f}" == "74.0"  # Table 4's ir-CSN-152 (same conv stack)
    assert "multiply-add" in d["unit"]["flops"]
    assert d["layers"][0]["name"] == "conv1"
    assert sum(l["flops"] for l in d["layers"]) == d["totals"]["flops"]


def test_cli_table_list_and_errors(tmp_path):
    r = run_cli("ir-csn-50")
    assert r.returncode == 0 and "10.578 G multiply-adds" in r.stdout and "5.4236 G" in r.stdout
    r = run_cli("--list")
    assert r.returncode == 0 and r.stdout.split() == list_presets()
    r = run_cli("no-such-net")
    assert r.returncode != 0 and "unknown preset 'no-such-net'" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(preset("bottleneck-G-16", groups=3).to_json())
    r = run_cli(str(bad))
    assert r.returncode != 0 and "conv2_1.conv_b: 64 channels are not divisible by 3 groups" in r.stderr
    good = tmp_path / "good.json"
    good.write_text(preset("ip-csn-26").to_json())
    r = run_cli(str(good), "--size", "112", "--classes", "10", "--head", "conv", "--json")
    d = json.loads(r.stdout)
    assert r.returncode == 0 and d["spec"]["height"] == 112 and d["spec"]["num_classes"] == 10
    (tmp_path / "junk.json").write_text("{not json")
    r = run_cli(str(tmp_path / "junk.json"))
    assert r.returncode != 0 and "not valid JSON" in r.stderr


def test_preset_can_rename_its_spec():
    s = preset("ir-csn-26", name="my-net", num_classes=3)
    assert s.name == "my-net" and s.num_classes == 3 and s.depth == 26


def test_per_stage_temporal_stride():
    """A stage's own temporal_stride overrides the global flag for that stage only."""
    def frames_after(spec):
        return {p.name: p.out_size[0] for p in plan(spec) if p.name.endswith("_1.conv_b")}

    base = preset("ir-csn-50", frames=8)
    assert frames_after(base) == {"conv2_1.conv_b": 8, "conv3_1.conv_b": 4, "conv4_1.conv_b": 2,
                                  "conv5_1.conv_b": 1}
    pv = preset("ir-csn-50", frames=8, stage_overrides={3: {"temporal_stride": False}})
    assert frames_after(pv)["conv5_1.conv_b"] == 2
    only5 = preset("ir-csn-50", frames=8, temporal_stride=False, stage_overrides={3: {"temporal_stride": True}})
    assert list(frames_after(only5).values()) == [8, 8, 8, 4]
    # keeping T in conv5 doubles conv5's multiply-adds and leaves the weights alone
    a, b = count(base), count(pv)
    assert b.totals.params == a.totals.params and b.totals.flops > a.totals.flops
    fa, fb = ({l.name: l.flops for l in r.layers if l.name.startswith("conv5")} for r in (a, b))
    assert fb.pop("conv5_1.conv_a") == fa.pop("conv5_1.conv_a")  # before the stride
    assert fb == {k: 2 * v for k, v in fa.items()}
    back = ArchSpec.from_json(pv.to_json())
    assert back == pv and back.stages[3].temporal_stride is False and back.stages[1].temporal_stride is None
    x = torch.randn(1, 3, 8, 32, 32)
    for spec in (base, pv):
        m = build_model(replace(spec, height=32, width=32, num_classes=5, stem_width=8,
                                stages=[replace(s, width=16, inner=4) for s in spec.stages])).eval()
        with torch.no_grad():
            assert m(x).shape == (1, 5)


def test_old_spec_json_without_new_fields_loads_unchanged():
    """Spec JSON written before pool2 / input_mean / input_std / input_order existed."""
    d = preset("ir-csn-50").to_dict()
    for k in ("pool2", "input_mean", "input_std", "input_order"):
        d.pop(k)
    old = ArchSpec.from_dict(d)
    assert old.pool2 is False and old.input_order == "RGB"
    assert old.input_mean == (0.43216, 0.394666, 0.37645) and old.input_std == (0.22803, 0.22145, 0.216989)
    assert count(old).totals == count(preset("ir-csn-50")).totals
    new = replace(old, input_mean=(0.45,) * 3, input_std=(0.225,) * 3, input_order="BGR", pool2=True)
    again = ArchSpec.from_json(new.to_json())
    assert again == new and isinstance(again.input_mean, tuple)
