"""backend.csn.perf: recommended settings and prepare_model keep the model's function."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.csn import build_model, preset
from backend.csn.depthwise import DepthwiseConv3d
from backend.csn import perf
from backend.csn.ops import set_depthwise_impl
from backend.csn.perf import (PerfSettings, autocast, convert_depthwise, prepare_input,
                              prepare_model, recommended_settings)

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture
def fresh_capabilities(monkeypatch):
    """cpu_native_precisions() re-read under the test's environment, and again afterwards."""
    perf.cpu_native_precisions.cache_clear()
    yield monkeypatch
    perf.cpu_native_precisions.cache_clear()


def test_reduced_precision_refused_on_a_cpu_without_it(fresh_capabilities):
    """The CPU's own answer is replaced by one without bf16/fp16: --amp bf16 must be refused
    with a message naming the missing ISA, never run on the ~19x slower fallback."""
    for query in ("_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_amx_fp16_supported"):
        fresh_capabilities.setattr(torch.cpu, query, lambda: False, raising=False)
    fresh_capabilities.setattr(perf, "_cpu_flags", lambda: {"avx2", "fma"})
    assert perf.cpu_native_precisions() == frozenset()
    for amp in ("bf16", "fp16"):
        with pytest.raises(perf.PrecisionError, match=f"no native {amp}.*use --amp none"):
            perf.check_amp("cpu", amp)
    assert perf.check_amp("cpu", "none") is None


def test_onednn_isa_cap_counts_as_no_native_bf16(fresh_capabilities):
    """ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN off the bf16 kernels even on a CPU that has them."""
    fresh_capabilities.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    fresh_capabilities.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert "bf16" in perf.cpu_native_precisions()
    assert perf.check_amp("cpu", "bf16") is torch.bfloat16
    perf.cpu_native_precisions.cache_clear()
    fresh_capabilities.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "bf16" not in perf.cpu_native_precisions()
    with pytest.raises(perf.PrecisionError, match="ONEDNN_MAX_CPU_ISA"):
        perf.check_amp("cpu", "bf16")


def test_trainer_cli_refuses_emulated_bf16(tmp_path):
    """End to end: `python -m backend.train --amp bf16` under an AVX2 cap fails at once with
    the reason on its last stderr line (the CLI contract), before reading any data."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "backend.train", "--arch", "ir-csn-26", "--data",
                        str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--amp", "bf16",
                        "--device", "cpu", "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "no native bf16" in last, r.stderr[-2000:]
