"""The device's roof: dense-conv compute rate and memory bandwidth, measured once per machine.

Cached as JSON in ``CSN_CACHE_DIR`` (default ``<data dir>/cache``), keyed by device name,
thread count and torch version. Each row then gets its arithmetic intensity (FLOPs per byte
moved in the forward pass: input, output and weights once), its attained rate and its bound
(memory where the intensity is below the ridge point ``peak / bandwidth``).
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import NamedTuple

import torch

from backend.paths import data_dir


class Roof(NamedTuple):
    device: str
    peak_flops: float        # FLOP/s (2 per multiply-add) of a dense 3x3x3 conv forward
    bandwidth: float         # bytes/s of a large tensor copy (read + write)
    key: str

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) where the two roofs meet."""
        return self.peak_flops / self.bandwidth


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_file() -> Path:
    base = os.environ.get("CSN_CACHE_DIR")
    return (Path(base) if base else data_dir() / "cache") / "roofline.json"


def _best(fn, sync, repeat: int = 3) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_roof(device: torch.device) -> tuple[float, float]:
    """(dense-conv FLOP/s, copy bytes/s) on ``device`` with its current thread count."""
    from .timing import sync_fn
    sync = sync_fn(device)
    big = device.type == "cuda"
    n, c, t, hw = (16, 128, 16, 56) if big else (2, 64, 8, 28)
    x = torch.randn(n, c, t, hw, hw, device=device).contiguous(memory_format=torch.channels_last_3d)
    w = torch.randn(c, c, 3, 3, 3, device=device).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        sec = _best(lambda: torch.nn.functional.conv3d(x, w, padding=1), sync)
    flops = 2 * n * c * c * 27 * t * hw * hw / sec
    numel = (256 if big else 16) * 2**20
    a = torch.empty(numel, device=device).uniform_()
    b = torch.empty_like(a)
    sec = _best(lambda: b.copy_(a), sync)
    return flops, 2 * numel * a.element_size() / sec


def roof(device: torch.device, remeasure: bool = False) -> Roof:
    """The cached roof of this machine (measured now the first time, or when asked)."""
    name = device_name(device)
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    key = f"{name}|{device.type}|threads={threads}|torch={torch.__version__}"
    path = cache_file()
    cached: dict = {}
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    hit = cached.get(key)
    if (not remeasure and isinstance(hit, dict) and isinstance(hit.get("peak_flops"), (int, float))
            and isinstance(hit.get("bandwidth"), (int, float)) and hit["bandwidth"] > 0):
        return Roof(name, float(hit["peak_flops"]), float(hit["bandwidth"]), key)
    flops, bw = measure_roof(device)
    cached[key] = {"peak_flops": flops, "bandwidth": bw, "measured": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cached, indent=1))
        tmp.replace(path)
    except OSError:
        pass                                     # unwritable cache: measured again next time
    return Roof(name, flops, bw, key)


def intensity(flops_mac: int, bytes_moved: int) -> float:
    """FLOPs (2 per multiply-add) per byte moved."""
    return 2 * flops_mac / bytes_moved if bytes_moved else 0.0


def bound(ai: float, r: Roof) -> str:
    return "memory" if ai < r.ridge else "compute"
