"""The pointwise 1x1x1 conv as matrix products against nn.Conv3d, and its wiring into the model."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from backend.csn import build_model, list_presets, preset
from backend.csn.depthwise import DepthwiseConv3d
from backend.csn.ops import make_conv3d, set_depthwise_impl
from backend.csn.perf import PerfSettings, convert_depthwise, prepare_model
from backend.csn.pointwise import PointwiseConv3d, PointwiseConv3dFunction
from backend.csn.spec import plan
from backend.profile import saved_activation_bytes

CL = torch.channels_last_3d
STRIDES = [(1, 1, 1), (1, 2, 2), (2, 2, 2)]


def _reference(x: torch.Tensor, w: torch.Tensor, stride, gy: torch.Tensor):
    """Output, d/dx, d/dw of F.conv3d in float64."""
    x64 = x.detach().double().requires_grad_()
    w64 = w.detach().double().requires_grad_()
    y = F.conv3d(x64, w64, None, stride)
    gx, gw = torch.autograd.grad(y, (x64, w64), gy.double())
    return y.detach(), gx, gw


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref).abs().max() / ref.abs().max()).item()


def _conv(c_in: int, c_out: int, stride, seed: int = 0) -> PointwiseConv3d:
    conv = PointwiseConv3d(c_in, c_out, stride)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=torch.Generator().manual_seed(seed)))
    return conv


@pytest.mark.parametrize("stride", STRIDES)
def test_gradcheck_double(stride):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 3, 5, 4, dtype=torch.float64, generator=g)
    x = x.contiguous(memory_format=CL).requires_grad_()
    w = torch.randn(4, 3, 1, 1, 1, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: PointwiseConv3dFunction.apply(a, b, stride),
                                    (x, w), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("size", [(5, 9, 7), (4, 8, 8)])
def test_fp32_matches_float64_reference(stride, batch, layout, size):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 16, *size, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    conv = _conv(16, 24, stride)
    xg = x.clone().requires_grad_()
    y = conv(xg)
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy)
    y_ref, gx_ref, gw_ref = _reference(x, conv.weight, stride, gy)
    assert y.shape == y_ref.shape
    assert _rel(y.detach(), y_ref) <= 1e-5
    assert _rel(xg.grad, gx_ref) <= 1e-5
    assert _rel(conv.weight.grad, gw_ref) <= 1e-5
    assert xg.grad.shape == x.shape and conv.weight.grad.shape == conv.weight.shape
    if layout == "channels_last":   # the GEMM path keeps the model's layout
        assert y.is_contiguous(memory_format=CL) and xg.grad.is_contiguous(memory_format=CL)


def test_gemm_path_is_taken_for_channels_last_only(monkeypatch):
    """Channels-last CPU float input: the GEMM Function; standard-contiguous: nn.Conv3d."""
    calls = []
    real = PointwiseConv3dFunction.apply
    monkeypatch.setattr(PointwiseConv3dFunction, "apply", lambda *a: calls.append(1) or real(*a))
    conv = _conv(8, 4, (1, 1, 1))
    x = torch.randn(2, 8, 3, 4, 4, requires_grad=True)
    conv(x.contiguous(memory_format=CL))
    assert calls == [1]
    conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: nn.Conv3d
        assert conv(x.contiguous(memory_format=CL)).dtype == torch.bfloat16
    assert calls == [1]


def test_only_weight_or_only_input_grad():
    conv = _conv(4, 6, (2, 2, 2))
    x = torch.randn(1, 4, 3, 5, 5).contiguous(memory_format=CL)
    conv(x).sum().backward()                      # x needs no grad
    _, _, gw_ref = _reference(x, conv.weight, (2, 2, 2), torch.ones(1, 6, 2, 3, 3))
    assert _rel(conv.weight.grad, gw_ref) <= 1e-5
    conv.weight.requires_grad_(False)
    xg = x.clone().requires_grad_()
    conv(xg).sum().backward()                     # weight frozen
    assert xg.grad is not None and conv.weight.grad is not None


def test_no_grad_meta_and_flop_counter_paths():
    conv = _conv(8, 16, (2, 2, 2))
    x = torch.randn(1, 8, 4, 8, 8).contiguous(memory_format=CL)
    with torch.no_grad():
        y = conv(x)
        assert torch.allclose(y, F.conv3d(x, conv.weight, None, 2), atol=1e-5)
    assert y.shape == (1, 16, 2, 4, 4)
    with torch.inference_mode():
        assert conv(x).shape == y.shape
    with torch.device("meta"):
        mconv = PointwiseConv3d(8, 16)
        mx = torch.empty(1, 8, 4, 8, 8)
    assert mconv(mx).device.type == "meta"
    counter = FlopCounterMode(display=False)
    with counter:
        conv(x.requires_grad_())
    assert counter.get_total_flops() == 2 * 8 * 16 * (2 * 4 * 4)


def test_module_is_a_conv3d_with_the_same_state_dict():
    fast = PointwiseConv3d(8, 12, (1, 2, 2))
    plain = torch.nn.Conv3d(8, 12, 1, (1, 2, 2), bias=False)
    assert isinstance(fast, torch.nn.Conv3d)
    assert fast.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 8, 4, 9, 9).contiguous(memory_format=CL)
    with torch.no_grad():
        assert torch.allclose(fast(x), plain(x), atol=1e-5)


def test_make_conv3d_switch():
    try:
        set_depthwise_impl("fast")
        assert type(make_conv3d(8, 16, (1, 1, 1), (1, 1, 1), (0, 0, 0), 1)) is PointwiseConv3d
        assert type(make_conv3d(8, 16, (1, 1, 1), (2, 2, 2), (0, 0, 0), 1)) is PointwiseConv3d
        # grouped pointwise (bottleneck-DG's pw_groups) stays plain
        assert type(make_conv3d(8, 16, (1, 1, 1), (1, 1, 1), (0, 0, 0), 2)) is torch.nn.Conv3d
        set_depthwise_impl("native")
        assert type(make_conv3d(8, 16, (1, 1, 1), (1, 1, 1), (0, 0, 0), 1)) is torch.nn.Conv3d
    finally:
        set_depthwise_impl(None)


def _build(name: str, impl: str):
    spec = preset(name, frames=8, height=32, width=32, num_classes=5)
    try:
        set_depthwise_impl(impl)
        torch.manual_seed(0)
        return spec, build_model(spec)
    finally:
        set_depthwise_impl(None)


# the 101/152-layer presets build 50-120 M parameter nets: end-to-end speed, run in CI
PRESETS = [pytest.param(n, marks=pytest.mark.slow) if n.endswith(("-101", "-152")) else n
           for n in list_presets()]


@pytest.mark.parametrize("name", PRESETS)
def test_fast_and_native_builds_have_the_same_state_dict(name):
    fast = _build(name, "fast")[1].state_dict()
    native = _build(name, "native")[1].state_dict()
    assert list(fast) == list(native)
    assert all(fast[k].shape == native[k].shape for k in fast)


def _step(model: torch.nn.Module, x: torch.Tensor, train: bool):
    """Logits and every parameter's gradient (float64) of one channels-last step."""
    model.to(memory_format=CL).train(train)
    y = model(x.contiguous(memory_format=CL))
    y.square().sum().backward()
    return y.detach().double(), {k: p.grad.double() for k, p in model.named_parameters()}


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("name", ["ir-csn-26", "resnet3d-26", "bottleneck-DG-16"])
def test_model_fast_and_native_agree(name):
    """Same weights, channels-last. float64, train mode: fast equals native to rounding.
    float32, eval mode (train-mode BatchNorm over conv5's 1x1x1 map of two clips amplifies any
    rounding): fast is as close to float64 native as native float32 is."""
    spec, native = _build(name, "native")
    weights = native.state_dict()

    def built(impl: str, dtype: torch.dtype) -> torch.nn.Module:
        model = _build(name, impl)[1]
        model.load_state_dict(weights)
        return model.to(dtype)

    x = torch.randn(2, 3, *spec.clip)
    fast64 = built("fast", torch.float64)
    assert any(isinstance(m, PointwiseConv3d) for m in fast64.modules())
    assert not any(isinstance(m, PointwiseConv3d) for m in native.modules())
    (y_nat, g_nat), (y_fast, g_fast) = (_step(m, x.double(), True)
                                        for m in (built("native", torch.float64), fast64))
    assert _err(y_fast, y_nat) <= 1e-9
    assert all(_err(g_fast[k], g_nat[k]) <= 1e-9 for k in g_nat)
    y_ref, g_ref = _step(built("native", torch.float64), x.double(), False)
    (y_nat, g_nat), (y_fast, g_fast) = (_step(built(impl, torch.float32), x, False)
                                        for impl in ("native", "fast"))
    assert _err(y_fast, y_ref) <= max(4 * _err(y_nat, y_ref), 1e-5)
    for k in g_ref:
        assert _err(g_fast[k], g_ref[k]) <= max(4 * _err(g_nat[k], g_ref[k]), 1e-5), k


def test_convert_swaps_pointwise_both_ways_and_keeps_parameters():
    spec, model = _build("ir-csn-26", "native")
    params = {id(p) for p in model.parameters()}
    convert_depthwise(model, "fast", pointwise="native")
    assert any(isinstance(m, DepthwiseConv3d) for m in model.modules())
    assert not any(isinstance(m, PointwiseConv3d) for m in model.modules())
    convert_depthwise(model, "fast")
    n_fast = sum(isinstance(m, PointwiseConv3d) for m in model.modules())
    assert n_fast == sum(p.kind == "pointwise" for p in plan(spec))
    assert isinstance(model.head.fc, torch.nn.Linear)
    convert_depthwise(model, "native")
    assert not any(isinstance(m, (PointwiseConv3d, DepthwiseConv3d)) for m in model.modules())
    assert {id(p) for p in model.parameters()} == params


@pytest.mark.parametrize("name", ["ir-csn-26", "ip-csn-26"])
def test_fast_model_keeps_what_native_keeps(name):
    """Autograd keeps the same bytes with the GEMM pointwise convs as with nn.Conv3d."""
    kept = []
    for impl in ("native", "fast"):
        spec, model = _build(name, impl)
        s = PerfSettings("cpu", channels_last=True, depthwise=impl)
        model = prepare_model(model, "cpu", train=True, settings=s)
        x = torch.randn(2, 3, *spec.clip).contiguous(memory_format=CL)
        kept.append(saved_activation_bytes(model, x)[0])
    assert kept[0] == kept[1]
