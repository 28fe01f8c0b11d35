"""backend.profile: the memory model equals what autograd keeps; rows are the counter's."""
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.csn import build_model, count, list_presets, preset
from backend.csn.ops import set_depthwise_impl
from backend.csn.spec import plan
from backend.csn.perf import PerfSettings, prepare_input, prepare_model
from backend.profile import (ProfileConfig, max_batch, memory_model, parse_bytes, profile,
                             saved_activation_bytes)
from backend.profile.roofline import Roof
from backend.profile.timing import row_modules
from test_model_agreement import valid_specs

ROOF = Roof("test", 1e11, 1e10, "test")


# the 101/152-layer presets build 50-120 M parameter nets: end-to-end speed, run in CI
PRESETS = [pytest.param(n, marks=pytest.mark.slow) if n.endswith(("-101", "-152")) else n
           for n in list_presets()]


def small(name: str, **kw):
    return preset(name, **{"frames": 8, "height": 32, "width": 32, "num_classes": 5, **kw})


def measured(spec, batch: int, channels_last: bool = True, depthwise: str = "fast"):
    set_depthwise_impl(depthwise)
    try:
        torch.manual_seed(0)
        model = build_model(spec)
    finally:
        set_depthwise_impl(None)
    s = PerfSettings("cpu", channels_last=channels_last, depthwise=depthwise)
    model = prepare_model(model, "cpu", train=True, settings=s)
    x = prepare_input(torch.randn(batch, spec.in_channels, *spec.clip), s)
    return saved_activation_bytes(model, x)


def analytic(spec, batch: int):
    return sum(r.activation_bytes for r in memory_model(spec, batch).layers)


def int64_bytes(spec, batch):
    """max-pool indices: the only int64 tensors autograd keeps."""
    return sum(8 * batch * p.c_out * p.out_size[0] * p.out_size[1] * p.out_size[2]
               for p in plan(spec) if p.kind == "maxpool")


@pytest.mark.parametrize("name", PRESETS)
def test_activation_bytes_equal_saved_tensors_every_preset(name):
    spec = small(name)
    got, by_dtype = measured(spec, 2)
    assert got == analytic(spec, 2)
    assert by_dtype.get("int64", 0) == int64_bytes(spec, 2)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs(), st.sampled_from([(True, "fast"), (False, "native"), (True, "native")]),
       st.sampled_from([0.0, 0.5]), st.integers(2, 3))
def test_activation_bytes_equal_saved_tensors_random_specs(spec, layout, dropout, batch):
    spec = replace(spec, dropout=dropout, height=min(spec.height, 48), width=min(spec.width, 48))
    got, _ = measured(spec, batch, *layout)
    assert got == analytic(spec, batch)


def test_fast_depthwise_keeps_no_layout_copy():
    """At 1 thread PyTorch's unstrided 1x1x1 conv returns contiguous tensors even in a
    channels-last model; DepthwiseConv3d re-lays its input out but keeps the caller's tensor."""
    spec = small("ir-csn-26")
    for channels_last in (True, False):
        assert measured(spec, 2, channels_last, "fast")[0] == analytic(spec, 2)


@pytest.mark.parametrize("opt", ["sgd", "adamw", "sgd-nomomentum"])
def test_params_grads_optimizer_state_bytes(opt):
    spec = small("ip-csn-26")
    model = build_model(spec)
    mm = memory_model(spec, 2, opt)
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    assert nbytes(model.parameters()) == mm.param_bytes
    assert nbytes(model.buffers()) == mm.buffer_bytes
    o = (torch.optim.AdamW(model.parameters()) if opt == "adamw" else
         torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9 if opt == "sgd" else 0.0))
    model(torch.randn(2, 3, *spec.clip)).sum().backward()
    assert nbytes(p.grad for p in model.parameters()) == mm.grad_bytes
    o.step()
    state = [t for s in o.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    assert nbytes(state) == mm.optimizer_bytes


def test_max_batch_consistent_with_memory_model():
    spec = small("ir-csn-50")
    budget = parse_bytes("1GB")
    b = max_batch(spec, budget)
    assert b > 0
    assert memory_model(spec, b).peak_bytes <= budget < memory_model(spec, b + 1).peak_bytes
    assert max_batch(spec, memory_model(spec, 1).peak_bytes - 1) == 0
    assert memory_model(spec, 3).peak_bytes > memory_model(spec, 2).peak_bytes


@pytest.mark.parametrize("text,value", [("24GB", 24 * 10**9), ("512MiB", 512 * 2**20), ("1e3", 1000)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("bad", ["", "GB", "-1GB", "12 parsecs", "x" * 500])
def test_parse_bytes_refuses(bad):
    with pytest.raises(ValueError, match="--memory") as e:
        parse_bytes(bad)
    assert "x" * 20 not in str(e.value)


@pytest.mark.parametrize("name,head", [("ir-csn-26", "fc"), ("ip-csn-26", "conv")])
def test_profile_rows_are_the_counters(name, head):
    # 16 frames: conv5's map is (2, 1, 1), so the conv head's (2, 1, 1) window fits
    spec = replace(small(name, frames=16), head=head, head_pool=(2, 1, 1) if head == "conv" else (0, 0, 0))
    rep = profile(spec, ProfileConfig(batch=2, repeats=1, threads=1), the_roof=ROOF)
    assert [r["name"] for r in rep.rows] == [l.name for l in count(spec).layers]
    assert [r["activation_bytes"] for r in rep.rows] == [l.activation_bytes
                                                          for l in memory_model(spec, 2).layers]
    timed = [r for r in rep.rows if r["name"] != "head.pool"]
    assert all(r["fwd_ms"] > 0 and r["bwd_ms"] > 0 for r in timed)
    assert sum(g["flops"] for g in rep.stages) == count(spec).totals.flops
    assert abs(sum(r["time_share"] for r in rep.rows) - 1) < 1e-9
    t = rep.totals
    assert t["step_ms"] > 0 and t["layers_ms"] > 0
    assert t["gap"] == pytest.approx((t["step_ms"] - t["layers_ms"] - t["other_ms"]) / t["step_ms"])
    dw = [r for r in rep.rows if r["kind"] == "depthwise"]
    assert dw and all(r["bound"] == "memory" for r in dw)   # ~6.7 FLOP/B < ridge 10


def test_profile_infer_mode_has_no_backward():
    spec = small("ir-csn-26")
    rep = profile(spec, ProfileConfig(batch=2, repeats=1, threads=1, mode="infer"), the_roof=ROOF)
    assert all(r["bwd_ms"] == 0 for r in rep.rows)
    assert sum(r["fwd_ms"] for r in rep.rows) > 0


def test_row_modules_cover_every_row():
    spec = small("ip-csn-26", pool2=True, frames=16)
    rows, blocks = row_modules(build_model(spec), spec)
    names = [l.name for l in count(spec).layers]
    assert set(rows) == set(names) - {"head.pool"}
    last_body = {p.block: p.name for p in plan(spec) if p.block and p.role != "shortcut"}
    assert set(blocks) == set(last_body.values())


@pytest.mark.slow
def test_cli_json_and_errors(tmp_path):
    env = dict(__import__("os").environ, CSN_CACHE_DIR=str(tmp_path))
    cmd = [sys.executable, "-m", "backend.profile"]
    r = subprocess.run(cmd + ["ir-csn-26", "--frames", "8", "--size", "32", "--batch", "2",
                              "--repeats", "1", "--threads", "1", "--json", "--memory", "2GB"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["baseline"] == "resnet3d-26"
    assert [x["stage"] for x in out["ratios"]][-1] == "total"
    assert out["fits"]["max_batch"] == max_batch(preset("ir-csn-26", frames=8, height=32, width=32),
                                                 2 * 10**9)
    assert (tmp_path / "roofline.json").is_file()
    for bad in (["no-such-preset"], ["ir-csn-26", "--batch", "0"], ["ir-csn-26", "--memory", "lots"],
                ["ir-csn-26", "--device", "tpu"], ["ir-csn-26", "--size", "4096", "--batch", "64"]):
        r = subprocess.run(cmd + bad, capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("entry", ["backend", "app"])
def test_entry_points_set_passive_openmp_before_torch(entry):
    """Every place the project starts torch gets OMP_WAIT_POLICY=PASSIVE before libgomp loads
    (an explicit value is kept); the trainer's environment carries it."""
    import os
    code = (f"import sys, os; import {entry}; assert 'torch' not in sys.modules; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "PASSIVE"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(env, OMP_WAIT_POLICY="ACTIVE"), timeout=60)
    assert r.stdout.strip() == "ACTIVE"


def test_trainer_env_is_passive(tmp_path, monkeypatch):
    from jobs.supervise import command
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    job = {"nproc": 1, "threads": 2, "dataset": "d", "hparams": {}, "devices": None}
    _, env = command(job, tmp_path, resume=False)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["OMP_NUM_THREADS"] == "2"
