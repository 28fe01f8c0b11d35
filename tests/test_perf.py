"""backend.csn.perf: recommended settings and prepare_model keep the model's function."""
from __future__ import annotations

import contextlib

import torch

from backend.csn import build_model, preset
from backend.csn.depthwise import DepthwiseConv3d
from backend.csn.ops import set_depthwise_impl
from backend.csn.perf import (PerfSettings, autocast, convert_depthwise, prepare_input,
                              prepare_model, recommended_settings)


def test_recommended_cpu_settings():
    s = recommended_settings("cpu")
    assert s.device == "cpu" and s.channels_last and s.autocast_dtype is None
    assert not s.compile and s.depthwise == "fast"
    assert s.memory_format == torch.channels_last_3d
    assert isinstance(autocast(s), contextlib.nullcontext)
    assert recommended_settings("cpu", threads=1).threads == 1


def test_cuda_settings_are_defined_without_a_gpu():
    s = recommended_settings("cuda")
    assert s.channels_last and s.autocast_dtype in (torch.bfloat16, torch.float16)


def test_prepare_model_converts_and_keeps_function():
    spec = preset("ir-csn-26", frames=8, height=32, width=32, num_classes=4)
    try:
        set_depthwise_impl("native")
        torch.manual_seed(0)
        model = build_model(spec).eval()
    finally:
        set_depthwise_impl(None)
    keys = list(model.state_dict())
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        before = model(x)
    threads = torch.get_num_threads()
    s = recommended_settings("cpu", threads=threads)
    model = prepare_model(model, "cpu", train=False, settings=s)
    assert not model.training
    assert any(isinstance(m, DepthwiseConv3d) for m in model.modules())
    assert list(model.state_dict()) == keys
    w = model.conv2[0].conv_a.conv.weight
    assert w.is_contiguous(memory_format=torch.channels_last_3d)
    xi = prepare_input(x, s)
    assert xi.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        after = model(xi)
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-5)
    # and back: the same Parameters are kept
    params = {id(p) for p in model.parameters()}
    convert_depthwise(model, "native")
    assert not any(isinstance(m, DepthwiseConv3d) for m in model.modules())
    assert {id(p) for p in model.parameters()} == params
    # a training step runs with the prepared model
    model = prepare_model(model, "cpu", train=True, settings=PerfSettings("cpu", threads=threads))
    model(prepare_input(torch.randn(2, 3, 8, 32, 32), s)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
