"""The analytic counter and the built torch module agree exactly, for presets and random specs."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from backend.csn import ArchSpec, StageSpec, build_model, count, list_presets, preset
from backend.csn.spec import BLOCK_TYPES


def module_costs(spec: ArchSpec):
    """(conv+fc weights, all params, torch FLOPs) of the built module on the meta device."""
    with torch.device("meta"):
        model = build_model(spec)
        x = torch.empty(1, spec.in_channels, *spec.clip)
    model.eval()  # batch 1 with a 1x1x1 feature map: training-mode BatchNorm refuses it
    weights = sum(m.weight.numel() for m in model.modules()
                  if isinstance(m, (torch.nn.Conv3d, torch.nn.Linear)))
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
    assert out.shape == (1, spec.num_classes)
    return weights, params, counter.get_total_flops()


def assert_agrees(spec: ArchSpec):
    t = count(spec).totals
    weights, params, torch_flops = module_costs(spec)
    assert weights == t.params
    assert params == t.all_params  # + BN (2 per channel) + biases
    assert torch_flops == 2 * t.flops


@pytest.mark.parametrize("name", list_presets())
def test_presets_agree(name):
    assert_agrees(preset(name, frames=8, height=112, width=112))


@pytest.mark.parametrize("name", ["ir-csn-101", "ip-csn-50", "resnet3d-18"])
def test_conv_head_and_clip_variants_agree(name):
    assert_agrees(preset(name, frames=32, height=256, width=256, head="conv", head_pool=(4, 7, 7)))
    assert_agrees(preset(name, frames=16, height=96, width=128, pool1=False, temporal_stride=False))
    assert_agrees(preset(name, frames=32, height=224, width=224, pool2=True))


def test_pool2_halves_time_after_conv2():
    spec = preset("ir-csn-50", frames=32, height=112, width=112, pool2=True)
    rows = {l.name: l for l in count(spec).layers}
    assert rows["pool2"].out_size == (16, 28, 28) and rows["conv3_1.conv_a"].out_size == (16, 28, 28)
    assert count(spec).totals.flops < count(preset("ir-csn-50", frames=32, height=112, width=112)).totals.flops
    with torch.device("meta"):
        feats = build_model(spec).features(torch.empty(1, 3, 32, 112, 112))
    assert feats.shape[2] == 2  # 32 -> pool2 16 -> 8 -> 4 -> 2


def _stage(block, width, inner, groups, pw_groups, blocks):
    if block.startswith("simple"):
        inner = width
    g = groups if block in ("simple-G", "bottleneck-G") else 1
    pg = pw_groups if block == "bottleneck-DG" else 1
    return StageSpec(blocks=blocks, width=width, inner=inner, block=block, groups=g, pw_groups=pg)


@st.composite
def valid_specs(draw):
    stages = []
    for _ in range(4):
        block = draw(st.sampled_from(BLOCK_TYPES))
        g = draw(st.sampled_from([1, 2, 4]))
        pg = draw(st.sampled_from([1, 2, 4]))
        inner = 4 * draw(st.integers(1, 6))
        width = 8 * draw(st.integers(1, 6))
        stages.append(_stage(block, width, inner, g, pg, draw(st.integers(1, 3))))
        if stages[1:]:  # conv3..conv5: follow the global flag, or their own
            stages[-1].temporal_stride = draw(st.sampled_from([None, True, False]))
    # widths must divide by the 1x1 groups of DG blocks (inner and width are multiples of 4)
    pool2 = draw(st.booleans())  # halves T once more: needs 12+ frames for three 2x strides
    return ArchSpec(
        stages=stages, pool2=pool2,
        frames=draw(st.sampled_from([12, 16] if pool2 else [8, 12, 16])),
        height=draw(st.integers(32, 80)), width=draw(st.integers(32, 80)),
        in_channels=draw(st.sampled_from([1, 3])), num_classes=draw(st.integers(2, 20)),
        stem_width=8 * draw(st.integers(1, 4)),
        stem_kernel_t=draw(st.sampled_from([1, 3, 5])), pool1=draw(st.booleans()),
        temporal_stride=draw(st.booleans()), head=draw(st.sampled_from(["fc", "conv"])),
        ip_relu=draw(st.booleans()),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_random_specs_agree(spec):
    assert_agrees(spec)


def test_real_forward_and_backward_cpu():
    torch.manual_seed(0)
    spec = preset("ir-csn-26", num_classes=5)
    model = build_model(spec)
    x = torch.randn(2, 3, 8, 48, 48, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # same function under channels_last_3d
    model.eval()
    with torch.no_grad():
        a = model(x.detach())
        b = model.to(memory_format=torch.channels_last_3d)(
            x.detach().contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_no_inplace_relu():
    model = build_model(preset("ip-csn-26"))
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    assert relus and not any(m.inplace for m in relus)
    # every ReLU module is used once (Captum needs distinct modules)
    assert len(relus) == len({id(m) for m in relus})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward():
    model = build_model(preset("ir-csn-26", num_classes=3)).cuda()
    assert model(torch.randn(1, 3, 8, 64, 64, device="cuda")).shape == (1, 3)
