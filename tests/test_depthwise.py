"""The fast depthwise 3x3x3 conv against float64 references, and its wiring into the model."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from backend.csn import build_model, preset
from backend.csn import depthwise as dw
from backend.csn.depthwise import DepthwiseConv3d, DepthwiseConv3dFunction, depthwise_conv3d
from backend.csn.ops import get_depthwise_impl, make_conv3d, set_depthwise_impl

STRIDES = [(1, 1, 1), (1, 2, 2), (2, 2, 2)]
CL = torch.channels_last_3d


def _reference(x: torch.Tensor, w: torch.Tensor, stride, gy: torch.Tensor):
    """Output, d/dx, d/dw of F.conv3d in float64."""
    x64 = x.detach().double().requires_grad_()
    w64 = w.detach().double().requires_grad_()
    y = F.conv3d(x64, w64, None, stride, 1, 1, w.shape[0])
    gx, gw = torch.autograd.grad(y, (x64, w64), gy.double())
    return y.detach(), gx, gw


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("shape", [(1, 3, 3, 5, 4), (2, 2, 4, 3, 5)])
def test_gradcheck_double(stride, shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.randn(shape[1], 1, 3, 3, 3, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: DepthwiseConv3dFunction.apply(a, b, stride),
                                    (x, w), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("size", [(5, 9, 7), (8, 12, 12)])
def test_fp32_matches_float64_reference(stride, batch, layout, size):
    g = torch.Generator().manual_seed(1)
    c = 16
    x = torch.randn(batch, c, *size, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    w = torch.randn(c, 1, 3, 3, 3, generator=g)
    conv = DepthwiseConv3d(c, stride)
    with torch.no_grad():
        conv.weight.copy_(w)
    xg = x.clone().requires_grad_()
    y = conv(xg)
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy)
    y_ref, gx_ref, gw_ref = _reference(x, w, stride, gy)
    assert y.shape == y_ref.shape
    assert _rel(y.detach(), y_ref) <= 1e-5
    assert _rel(xg.grad, gx_ref) <= 1e-5
    assert _rel(conv.weight.grad, gw_ref) <= 1e-5
    assert xg.grad.shape == x.shape and conv.weight.grad.shape == w.shape


@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2)])
def test_weight_grad_fallback_without_numba(monkeypatch, stride):
    """The PyTorch fallback (used on CUDA / without numba) gives the same gradients."""
    monkeypatch.setattr(dw, "HAVE_NUMBA", False)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 8, 4, 7, 6, generator=g, requires_grad=True)
    w = torch.randn(8, 1, 3, 3, 3, generator=g, requires_grad=True)
    y = depthwise_conv3d(x, w, stride)
    gy = torch.randn(y.shape, generator=g)
    y.backward(gy)
    _, gx_ref, gw_ref = _reference(x, w, stride, gy)
    assert _rel(x.grad, gx_ref) <= 1e-5 and _rel(w.grad, gw_ref) <= 1e-5


def test_only_weight_or_only_input_grad():
    x = torch.randn(1, 4, 3, 5, 5)
    w = torch.randn(4, 1, 3, 3, 3, requires_grad=True)
    depthwise_conv3d(x, w).sum().backward()          # x needs no grad
    _, _, gw_ref = _reference(x, w, (1, 1, 1), torch.ones(1, 4, 3, 5, 5))
    assert _rel(w.grad, gw_ref) <= 1e-5
    xg = x.clone().requires_grad_()
    depthwise_conv3d(xg, w.detach()).sum().backward()  # weight frozen
    assert xg.grad is not None


def test_module_is_a_conv3d_with_the_same_state_dict():
    fast = DepthwiseConv3d(8, (1, 2, 2))
    plain = torch.nn.Conv3d(8, 8, 3, (1, 2, 2), 1, groups=8, bias=False)
    assert isinstance(fast, torch.nn.Conv3d)
    assert fast.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 8, 4, 9, 9)
    with torch.no_grad():
        assert torch.allclose(fast(x), plain(x), atol=1e-5)


def test_no_grad_meta_and_flop_counter_paths():
    conv = DepthwiseConv3d(8, (2, 2, 2))
    x = torch.randn(1, 8, 4, 8, 8)
    with torch.no_grad():
        y = conv(x)
    assert y.shape == (1, 8, 2, 4, 4)
    with torch.device("meta"):
        mconv = DepthwiseConv3d(8)
        mx = torch.empty(1, 8, 4, 8, 8)
    assert mconv(mx).device.type == "meta"
    counter = FlopCounterMode(display=False)
    with counter:
        conv(x.requires_grad_())
    assert counter.get_total_flops() == 2 * 8 * 27 * (2 * 4 * 4)


def test_make_conv3d_switch(monkeypatch):
    try:
        monkeypatch.delenv("CSN_DEPTHWISE", raising=False)
        set_depthwise_impl(None)
        assert get_depthwise_impl() == "fast"
        assert type(make_conv3d(8, 8, (3, 3, 3), (1, 1, 1), (1, 1, 1), 8)) is DepthwiseConv3d
        # non-depthwise convs stay plain (1x1x1 ones: tests/test_pointwise.py)
        assert type(make_conv3d(8, 8, (3, 3, 3), (1, 1, 1), (1, 1, 1), 4)) is torch.nn.Conv3d
        monkeypatch.setenv("CSN_DEPTHWISE", "native")
        assert type(make_conv3d(8, 8, (3, 3, 3), (1, 1, 1), (1, 1, 1), 8)) is torch.nn.Conv3d
        set_depthwise_impl("fast")  # the function wins over the environment
        assert type(make_conv3d(8, 8, (3, 3, 3), (1, 2, 2), (1, 1, 1), 8)) is DepthwiseConv3d
        with pytest.raises(ValueError):
            set_depthwise_impl("bogus")
    finally:
        set_depthwise_impl(None)


@pytest.mark.parametrize("name", ["ir-csn-26", "ip-csn-26"])
def test_model_fast_and_native_agree(name):
    """Same weights: the fast fp32 model is as close to a float64 native model as native fp32 is."""
    spec = preset(name, frames=8, height=32, width=32, num_classes=5)
    try:
        set_depthwise_impl("native")
        torch.manual_seed(0)
        native = build_model(spec)
        ref = build_model(spec)
        set_depthwise_impl("fast")
        fast = build_model(spec)
    finally:
        set_depthwise_impl(None)
    assert any(isinstance(m, DepthwiseConv3d) for m in fast.modules())
    assert not any(isinstance(m, DepthwiseConv3d) for m in native.modules())
    fast.load_state_dict(native.state_dict())
    ref.load_state_dict(native.state_dict())
    ref.double()
    x = torch.randn(2, 3, 8, 32, 32)
    outs = []
    for m, xx in ((ref, x.double()), (native, x), (fast, x)):
        m.train()
        y = m(xx)
        y.square().sum().backward()
        outs.append((y.detach().double(), {k: p.grad.double() for k, p in m.named_parameters()}))
    (y_ref, g_ref), (y_nat, g_nat), (y_fast, g_fast) = outs

    def err(a, b):
        return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()

    assert err(y_fast, y_ref) <= max(4 * err(y_nat, y_ref), 1e-5)
    for k in g_ref:
        assert err(g_fast[k], g_ref[k]) <= max(4 * err(g_nat[k], g_ref[k]), 1e-5), k


def test_autocast_bf16_backward_runs():
    conv = DepthwiseConv3d(8, (1, 2, 2))
    x = torch.randn(2, 8, 4, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and conv.weight.grad.dtype == torch.float32
    _, gx_ref, gw_ref = _reference(x, conv.weight, (1, 2, 2), torch.ones(y.shape))
    assert _rel(x.grad, gx_ref) < 0.05 and _rel(conv.weight.grad, gw_ref) < 0.05


def test_numba_failure_falls_back(monkeypatch):
    if not dw.HAVE_NUMBA:
        pytest.skip("numba not installed")

    def boom(*a, **k):
        raise RuntimeError("no cache locator")
    monkeypatch.setattr(dw, "HAVE_NUMBA", True)  # restored after the test
    monkeypatch.setattr(dw, "_nb_weight_grad", boom)
    x = torch.randn(1, 4, 3, 5, 5)
    w = torch.randn(4, 1, 3, 3, 3, requires_grad=True)
    with pytest.warns(RuntimeWarning):
        depthwise_conv3d(x, w).sum().backward()
    assert not dw.HAVE_NUMBA
    _, _, gw_ref = _reference(x, w, (1, 1, 1), torch.ones(1, 4, 3, 5, 5))
    assert _rel(w.grad, gw_ref) <= 1e-5


def test_numba_pool_start_keeps_torchs_thread_count():
    """numba's OpenMP pool, started by the first strided backward, resets the OpenMP thread
    count (to every core without OMP_NUM_THREADS); torch's own setting must survive it."""
    if not dw.HAVE_NUMBA:
        pytest.skip("numba not installed")
    import os
    import subprocess
    import sys
    code = ("import torch; torch.set_num_threads(1)\n"
            "from backend.csn.depthwise import depthwise_conv3d\n"
            "x = torch.randn(1, 4, 3, 6, 6, requires_grad=True)\n"
            "w = torch.randn(4, 1, 3, 3, 3, requires_grad=True)\n"
            "depthwise_conv3d(x, w, (2, 2, 2)).sum().backward()\n"
            "print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "1"
