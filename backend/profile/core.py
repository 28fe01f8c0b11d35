"""``profile(spec)``: FLOPs, measured time, memory and roofline side by side, per counter row."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from backend.csn import ArchSpec, build_model, count
from backend.csn.spec import plan
from backend.csn.perf import PerfSettings, autocast, prepare_input, prepare_model, set_threads

from . import memory as mem
from .roofline import Roof, bound, intensity, roof
from .timing import OTHER, time_rows


@dataclass(frozen=True)
class ProfileConfig:
    batch: int = 4
    device: str = "cpu"
    mode: str = "train"              # train (fwd + bwd + SGD step) | infer (eval, no grad)
    threads: int | None = None       # CPU threads; None: torch's current
    repeats: int = 3
    dtype: str = "fp32"              # fp32 | bf16 (autocast; memory model is for fp32)
    channels_last: bool = True
    optimizer: str = "sgd"           # sgd (momentum 0.9) | sgd-nomomentum | adamw

    def check(self) -> None:
        for name, ok in (("batch", 1 <= self.batch <= 4096), ("repeats", 1 <= self.repeats <= 100),
                         ("mode", self.mode in ("train", "infer")),
                         ("dtype", self.dtype in ("fp32", "bf16")),
                         ("optimizer", self.optimizer in mem.OPTIMIZERS),
                         ("threads", self.threads is None or 1 <= self.threads <= 1024)):
            if not ok:
                raise ValueError(f"{name}: invalid value")


@dataclass
class ProfileReport:
    spec_name: str
    config: dict
    rows: list[dict]
    stages: list[dict]
    blocks: list[dict]
    totals: dict
    memory: dict
    roof: dict
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _optimizer(model: nn.Module, name: str) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-4)
    return torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9 if name == "sgd" else 0.0)


def _make_step(model: nn.Module, spec: ArchSpec, cfg: ProfileConfig, s: PerfSettings):
    torch.manual_seed(0)
    x = prepare_input(torch.randn(cfg.batch, spec.in_channels, *spec.clip), s)
    y = torch.randint(0, spec.num_classes, (cfg.batch,), device=x.device)
    if cfg.mode == "infer":
        def infer(clock) -> None:
            with torch.inference_mode(), autocast(s):
                if clock:
                    clock.start("fwd")
                model(x)
                if clock:
                    clock.tick()
        return infer
    opt = _optimizer(model, cfg.optimizer)

    def train(clock) -> None:
        if clock:
            clock.start("fwd")
        with autocast(s):
            out = model(x)
        if clock:
            clock.tick()
        loss = nn.functional.cross_entropy(out.float(), y)
        if clock:
            clock.start("bwd")
        loss.backward()
        if clock:
            clock.tick()
            clock.start("opt")
        opt.step()
        opt.zero_grad(set_to_none=True)
        if clock:
            clock.tick()
    return train


def settings_for(cfg: ProfileConfig) -> PerfSettings:
    dtype = torch.bfloat16 if cfg.dtype == "bf16" else None
    return PerfSettings(device=cfg.device, channels_last=cfg.channels_last, autocast_dtype=dtype,
                        threads=cfg.threads, cudnn_benchmark=cfg.device.startswith("cuda"))


def measure(spec: ArchSpec, cfg: ProfileConfig,
            progress: Callable[[float], None] | None = None) -> dict:
    """Build, prepare and time ``spec`` under ``cfg``: the raw output of :func:`time_rows`."""
    cfg.check()
    if cfg.threads:
        set_threads(cfg.threads)
    s = settings_for(cfg)
    torch.manual_seed(0)
    model = prepare_model(build_model(spec), cfg.device, train=cfg.mode == "train", settings=s)
    step = _make_step(model, spec, cfg, s)
    return time_rows(step, model, spec, torch.device(cfg.device), cfg.repeats,
                     train=cfg.mode == "train", progress=progress)


def _moved_bytes(p, params: int, batch: int) -> int:
    """Bytes a row's forward reads and writes once (float32): input, output, weights."""
    return mem.FLOAT_BYTES * (batch * (p.c_in * math.prod(p.in_size) + p.c_out * math.prod(p.out_size))
                              + params)


def profile(spec: ArchSpec, cfg: ProfileConfig = ProfileConfig(), *, the_roof: Roof | None = None,
            progress: Callable[[float], None] | None = None) -> ProfileReport:
    """Per-row FLOPs, forward / backward time, kept activation bytes and roofline of ``spec``."""
    timed = measure(spec, cfg, progress)
    r = the_roof or roof(torch.device(cfg.device))
    mm = mem.memory_model(spec, cfg.batch, cfg.optimizer, cfg.device)
    counted = count(spec)
    rows = _rows(counted.layers, list(plan(spec)), timed["rows"], mm, r, cfg)
    layers_s = sum(x["fwd_ms"] + x["bwd_ms"] for x in rows) / 1e3
    other_s = sum(v for (ph, k), v in timed["rows"].items() if k == OTHER)
    step = timed["step_s"]
    totals = {"flops": counted.totals.flops, "step_ms": 1e3 * step,
              "hooked_step_ms": 1e3 * timed["hooked_step_s"], "layers_ms": 1e3 * layers_s,
              "other_ms": 1e3 * other_s,
              # unattributed: the un-hooked step minus rows and loss / optimizer / engine time
              "gap": (step - layers_s - other_s) / step if step else 0.0,
              "overhead": timed["hooked_step_s"] / step - 1 if step else 0.0,
              "activation_bytes": mm.activation_bytes}
    warnings = []
    if abs(totals["gap"]) > 0.15:
        warnings.append(f"rows + loss/optimizer are {100 * totals['gap']:+.0f}% off the measured "
                        "step (a loaded machine?); per-row times are approximate")
    if cfg.dtype != "fp32":
        warnings.append("memory model is for float32; autocast keeps extra low-precision copies")
    return ProfileReport(spec.name, asdict(cfg), rows, _group(rows, "stage"), _group(rows, "block"),
                         totals, _memory_dict(mm, cfg), r._asdict() | {"ridge": r.ridge}, warnings)


def _rows(layers, plans, timed: dict, mm: mem.MemoryModel, r: Roof, cfg: ProfileConfig) -> list[dict]:
    total_flops = sum(l.flops for l in layers) or 1
    total_act = mm.activation_bytes or 1
    out = []
    for l, p, m in zip(layers, plans, mm.layers):
        fwd, bwd = timed.get(("fwd", l.name), 0.0), timed.get(("bwd", l.name), 0.0)
        mult = 1 if cfg.mode == "infer" else (2 if l.name == "conv1" else 3)   # stem: no dX
        work = 2 * l.flops * cfg.batch * mult
        ai = intensity(l.flops * cfg.batch, _moved_bytes(p, l.params, cfg.batch))
        sec = fwd + bwd
        out.append({"name": l.name, "kind": l.kind, "stage": l.stage,
                    "block": l.name.split(".")[0] if "." in l.name else l.name,
                    "flops": l.flops, "fwd_ms": 1e3 * fwd, "bwd_ms": 1e3 * bwd,
                    "activation_bytes": m.activation_bytes, "intensity": ai,
                    "attained_gflops": work / sec / 1e9 if sec > 0 else 0.0,
                    "bound": bound(ai, r) if l.flops else "memory",
                    "flop_share": l.flops / total_flops,
                    "memory_share": m.activation_bytes / total_act})
    total_s = sum(x["fwd_ms"] + x["bwd_ms"] for x in out) or 1.0
    for x in out:
        x["time_share"] = (x["fwd_ms"] + x["bwd_ms"]) / total_s
    return out


def _group(rows: list[dict], key: str) -> list[dict]:
    order: dict[str, dict] = {}
    for x in rows:
        g = order.setdefault(x[key], {key: x[key], "flops": 0, "fwd_ms": 0.0, "bwd_ms": 0.0,
                                      "activation_bytes": 0, "flop_share": 0.0,
                                      "time_share": 0.0, "memory_share": 0.0})
        for f in ("flops", "fwd_ms", "bwd_ms", "activation_bytes", "flop_share", "time_share",
                  "memory_share"):
            g[f] += x[f]
    return list(order.values())


def _memory_dict(mm: mem.MemoryModel, cfg: ProfileConfig) -> dict:
    d = {k: getattr(mm, k) for k in ("batch", "param_bytes", "buffer_bytes", "grad_bytes",
                                      "optimizer_bytes", "loss_bytes", "activation_bytes",
                                      "workspace_bytes", "peak_bytes", "optimizer")}
    if cfg.mode == "infer":   # no grads, no optimizer, nothing kept: the largest live pair
        d["peak_bytes"] = mm.param_bytes + mm.buffer_bytes + mm.workspace_bytes
    return d
