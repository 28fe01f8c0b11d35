"""Fastest known settings for training and inference, per device, and helpers to apply them.

Measured on CPU (2-core AMD EPYC, torch 2.13; see ``bench/bench_step.py``):

* the fast depthwise conv (:class:`~backend.csn.depthwise.DepthwiseConv3d`) and 1x1x1
  convs as matrix products (:class:`~backend.csn.pointwise.PointwiseConv3d`);
* ``channels_last_3d`` for model and input: oneDNN's depthwise forward is fast only in this
  layout, and the pointwise convs / BatchNorm do not lose from it;
* float32, no autocast: bfloat16 autocast is slower on CPUs without native bf16 matmul
  (19x slower for the ir-CSN-50 train step on a 2-core AMD EPYC without avx512_bf16), so
  :func:`check_amp` refuses reduced precision on a CPU that lacks native support for it;
* no ``torch.compile`` (needs a C++ compiler at run time; not a default);
* threads: torch's default (one per core) is fastest when the process has the cores to
  itself; pass ``threads=`` to share a machine.

CUDA (not measured here; reasonable defaults): channels_last_3d, bfloat16 autocast where
supported (else float16 with a GradScaler, which the caller owns), ``cudnn.benchmark``.

Typical use::

    s = recommended_settings(device)
    model = prepare_model(model, device, train=True, settings=s)
    x = prepare_input(x, s)
    with autocast(s):
        loss = criterion(model(x), y)
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import ContextManager

import torch
from torch import nn

from .depthwise import DepthwiseConv3d, is_fast_depthwise
from .pointwise import PointwiseConv3d, is_fast_pointwise


@dataclass(frozen=True)
class PerfSettings:
    """What :func:`prepare_model`, :func:`prepare_input` and :func:`autocast` apply."""

    device: str                               # "cpu" or "cuda[:i]"
    channels_last: bool = True                # model + input in torch.channels_last_3d
    autocast_dtype: torch.dtype | None = None  # None: plain float32
    compile: bool = False                     # torch.compile the model
    threads: int | None = None                # torch.set_num_threads (CPU); None: leave
    depthwise: str = "fast"                   # "fast" | "native" depthwise conv modules
    pointwise: str | None = None              # "fast" | "native" 1x1x1 convs; None: as depthwise
    cudnn_benchmark: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last_3d if self.channels_last else torch.contiguous_format


class PrecisionError(ValueError):
    """Reduced precision asked for on a device that would run it on a slow fallback path."""


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA) below which it has no bf16 / fp16
# kernels, whatever the CPU can do
_NATIVE_ISA = {"bf16": "avx512_bf16 / amx_bf16", "fp16": "avx512_fp16 / amx_fp16"}
_ISA_WITHOUT = {
    "bf16": {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"},
    "fp16": {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
             "AVX512_CORE_VNNI", "AVX512_CORE_BF16"},
}


def _cpu_flags() -> set[str]:
    """``/proc/cpuinfo`` flags (the ``lscpu`` fallback); empty where unreadable."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=None)
def cpu_native_precisions() -> frozenset[str]:
    """The reduced precisions ("bf16", "fp16") this CPU runs natively, as oneDNN is allowed to.

    bf16: avx512_bf16 or AMX tiles; fp16: AMX-FP16 or avx512_fp16 (torch's cpuinfo queries,
    ``/proc/cpuinfo`` flags as a fallback). A ``ONEDNN_MAX_CPU_ISA`` cap below those ISAs
    removes them, since oneDNN then takes the same slow path as a CPU without them.
    """
    flags = _cpu_flags()
    cpu = getattr(torch, "cpu", None)

    def has(query: str, *flag_names: str) -> bool:
        fn = getattr(cpu, query, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:
            pass
        return any(f in flags for f in flag_names)

    found = set()
    if has("_is_avx512_bf16_supported", "avx512_bf16") or has("_is_amx_tile_supported", "amx_bf16"):
        found.add("bf16")
    if has("_is_amx_fp16_supported", "amx_fp16") or "avx512_fp16" in flags:
        found.add("fp16")
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    return frozenset(p for p in found if cap not in _ISA_WITHOUT[p])


def check_amp(device: str | torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` ("none" | "bf16" | "fp16") on ``device``.

    Raises :class:`PrecisionError` for reduced precision on a CPU without native support
    (autocast would fall back to a scalar path, an order of magnitude slower than float32)
    and for bf16 on a CUDA device that lacks it.
    """
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    dev = torch.device(device)
    if dtype is None:
        return None
    if dev.type == "cpu" and amp not in cpu_native_precisions():
        raise PrecisionError(
            f"--amp {amp}: this CPU has no native {amp} support ({_NATIVE_ISA[amp]} missing, or "
            f"ONEDNN_MAX_CPU_ISA caps oneDNN below it), so autocast would run a slow "
            f"fallback (19x slower than float32 measured on an AMD EPYC); use --amp none")
    if dev.type == "cuda" and amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise PrecisionError("--amp bf16: this GPU has no bfloat16 support; use --amp fp16 or none")
    return dtype


def recommended_settings(device: str | torch.device = "cpu", train: bool = True,
                         threads: int | None = None) -> PerfSettings:
    """The defaults to use on ``device`` (CPU: measured; CUDA: unmeasured, see module doc).

    The same settings won for training and inference on CPU; ``train`` is kept so callers
    need not change when they differ on some device.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return PerfSettings(device=str(dev), channels_last=True,
                            autocast_dtype=torch.bfloat16 if bf16 else torch.float16,
                            threads=None, cudnn_benchmark=True)
    return PerfSettings(device=str(dev), channels_last=True, autocast_dtype=None,
                        threads=threads)


def set_threads(n: int) -> None:
    """``n`` compute threads for torch and, when it is loaded, for numba's parallel depthwise
    kernels (which otherwise use every core, oversubscribing a shared machine). numba first:
    starting its OpenMP pool resets the OpenMP thread count that torch reads."""
    import sys
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(n)


def training_settings(device: str | torch.device, amp: str = "none") -> PerfSettings:
    """The trainer's settings on ``device``: its recommended memory format, autocast only
    when asked (``amp`` none | bf16 | fp16, checked by :func:`check_amp`), depthwise convs
    as the model was built (``CSN_DEPTHWISE`` / ``set_depthwise_impl``)."""
    from .ops import get_depthwise_impl
    return replace(recommended_settings(device), autocast_dtype=check_amp(device, amp),
                   depthwise=get_depthwise_impl())


def _swapped(conv: nn.Conv3d, depthwise: str, pointwise: str) -> nn.Conv3d | None:
    """The conv module ``conv`` becomes under the chosen implementations (None: unchanged)."""
    if conv.bias is not None:
        return None
    if is_fast_depthwise(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                         conv.padding, conv.groups):
        if depthwise == "fast" and type(conv) is nn.Conv3d:
            return DepthwiseConv3d(conv.in_channels, conv.stride)
        if depthwise == "native" and isinstance(conv, DepthwiseConv3d):
            return nn.Conv3d(conv.in_channels, conv.out_channels, 3, conv.stride, 1,
                             groups=conv.groups, bias=False)
    elif is_fast_pointwise(conv.kernel_size, conv.padding, conv.groups, conv.dilation):
        if pointwise == "fast" and type(conv) is nn.Conv3d:
            return PointwiseConv3d(conv.in_channels, conv.out_channels, conv.stride)
        if pointwise == "native" and isinstance(conv, PointwiseConv3d):
            return nn.Conv3d(conv.in_channels, conv.out_channels, 1, conv.stride, bias=False)
    return None


def convert_depthwise(model: nn.Module, impl: str = "fast",
                      pointwise: str | None = None) -> nn.Module:
    """Swap every depthwise 3x3x3 conv to ``impl`` and every bias-free 1x1x1 groups-1 conv to
    ``pointwise`` (default: ``impl``) in place, weights kept, and return model.

    For models built under ``CSN_DEPTHWISE=native`` or loaded elsewhere; the state dict is
    unchanged either way.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Conv3d):
                continue
            new = _swapped(child, impl, pointwise or impl)
            if new is None:
                continue
            new.weight = child.weight            # same Parameter: optimizer state stays valid
            new.train(child.training)
            setattr(parent, name, new)
    return model


def prepare_model(model: nn.Module, device: str | torch.device = "cpu", train: bool = True,
                  settings: PerfSettings | None = None) -> nn.Module:
    """Apply ``settings`` (default :func:`recommended_settings`) to ``model``; returns it.

    Moves it to ``device`` and the memory format, sets train/eval mode, thread count and
    cuDNN benchmark, swaps depthwise and pointwise convs; compiles when ``settings.compile``.
    Call before creating the optimizer (or keep its parameters: they are the same tensors on
    CPU).
    """
    s = settings or recommended_settings(device, train)
    if s.threads:
        set_threads(s.threads)
    if s.cudnn_benchmark and torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = True
    convert_depthwise(model, s.depthwise, s.pointwise)
    model.to(device=torch.device(s.device), memory_format=s.memory_format)
    model.train(train)
    if s.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


def prepare_input(x: torch.Tensor, settings: PerfSettings) -> torch.Tensor:
    """A clip batch (N, C, T, H, W) on the settings' device and memory format."""
    return x.to(device=torch.device(settings.device), memory_format=settings.memory_format,
                non_blocking=True)


def autocast(settings: PerfSettings) -> ContextManager:
    """``torch.autocast`` for the settings' dtype, or a no-op context for float32."""
    if settings.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(settings.device).type, dtype=settings.autocast_dtype)
