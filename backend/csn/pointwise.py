"""Fast pointwise (1x1x1, groups 1) 3D convolution on CPU, as matrix products over channels.

PyTorch's CPU 1x1x1 ``conv3d`` on a channels_last_3d input is several times slower than the
same product as one GEMM where it takes its single-thread path (``slow_conv3d``: one thread,
batch < 16, unstrided; measured, torch 2.13, float32: N=4, 256 -> 64 channels, 8x28x28,
forward + backward 227 ms vs 35 ms), and 1.15-1.4x slower, summed over a network's 1x1x1
layers, on its oneDNN path (2 threads, or batch >= 16). :class:`PointwiseConv3d` keeps
``nn.Conv3d``'s parameters and state dict (it *is* an ``nn.Conv3d``) and computes

* forward: ``x[N, T, H, W, C] @ W.T`` on a view of the channels_last_3d input; the result
  is channels_last_3d; stride s: the same on ``x[:, :, ::st, ::sh, ::sw]`` (a copy of the
  samples read);
* backward: ``dW = dY^T X`` and ``dX = dY W`` (scattered into zeros when strided), in
  :class:`PointwiseConv3dFunction`, which keeps only the caller's input and the weight for
  backward, exactly what ``conv3d`` keeps.

Any other input takes ``nn.Conv3d.forward``, so counters and exporters see a convolution:
one not channels_last_3d (PyTorch's 1x1x1 conv is not slow on standard-contiguous tensors, and
a layout copy would be a second copy of the activation), off the CPU (not measured), of a
dtype other than float32/float64, under autocast, under a ``TorchDispatchMode``
(``FlopCounterMode``), or when tracing / scripting (fvcore, export).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils._python_dispatch import _get_current_dispatch_mode

_CL = torch.channels_last_3d


def is_fast_pointwise(kernel: Sequence[int], padding: Sequence[int], groups: int,
                      dilation: Sequence[int] = (1, 1, 1)) -> bool:
    """Whether a conv is one :class:`PointwiseConv3d` implements (1x1x1, groups 1, no padding;
    any stride)."""
    return (groups == 1 and tuple(kernel) == (1, 1, 1) and tuple(padding) == (0, 0, 0)
            and tuple(dilation) == (1, 1, 1))


def _strided(x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    """The input samples a strided 1x1x1 conv reads (a view)."""
    if stride == (1, 1, 1):
        return x
    st, sh, sw = stride
    return x[:, :, ::st, ::sh, ::sw]


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(N*T*H*W, C) rows of ``x``: a view when it is channels_last_3d, else a copy."""
    return x.permute(0, 2, 3, 4, 1).reshape(-1, x.shape[1])


def pointwise_forward(x: torch.Tensor, weight: torch.Tensor,
                      stride: tuple[int, int, int]) -> torch.Tensor:
    """y = conv3d(x, weight, stride), kernel 1x1x1, as one GEMM; channels_last_3d result."""
    xs = _strided(x, stride)
    n, _, t, h, w = xs.shape
    y = torch.mm(_rows(xs), weight.reshape(weight.shape[0], -1).t())   # (NTHW, Co)
    return y.view(n, t, h, w, -1).permute(0, 4, 1, 2, 3)


def _input_grad(gy: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int, int],
                x: torch.Tensor) -> torch.Tensor:
    """dY W, scattered into zeros at the samples a strided conv read."""
    n, co, t, h, w = gy.shape
    gxs = torch.mm(_rows(gy), weight.reshape(co, -1)).view(n, t, h, w, -1).permute(0, 4, 1, 2, 3)
    if stride == (1, 1, 1):
        return gxs
    gx = torch.zeros_like(x, memory_format=_CL)
    _strided(gx, stride).copy_(gxs)
    return gx


def _weight_grad(x: torch.Tensor, gy: torch.Tensor, weight: torch.Tensor,
                 stride: tuple[int, int, int]) -> torch.Tensor:
    """dY^T X over every output sample."""
    return torch.mm(_rows(gy).t(), _rows(_strided(x, stride))).view(weight.shape)


class PointwiseConv3dFunction(torch.autograd.Function):
    """y = conv3d(x, weight, stride) for a 1x1x1 kernel, groups 1, as GEMMs (see module doc)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                stride: tuple[int, int, int]) -> torch.Tensor:
        ctx.stride = tuple(stride)
        ctx.save_for_backward(x, weight)   # the caller's tensor, as conv3d keeps it
        return pointwise_forward(x, weight, ctx.stride)

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: torch.Tensor):
        x, weight = ctx.saved_tensors
        gy = gy.contiguous(memory_format=_CL)
        gx = _input_grad(gy, weight, ctx.stride, x) if ctx.needs_input_grad[0] else None
        gw = _weight_grad(x, gy, weight, ctx.stride) if ctx.needs_input_grad[1] else None
        return gx, gw, None


def _use_gemm(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Where the GEMM path was measured faster and counters / exporters are not watching."""
    return (x.device.type == "cpu" and x.dim() == 5 and x.is_contiguous(memory_format=_CL)
            and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype
            and not torch.is_autocast_enabled("cpu")
            and _get_current_dispatch_mode() is None
            and not (torch.jit.is_scripting() or torch.jit.is_tracing()))


class PointwiseConv3d(nn.Conv3d):
    """Pointwise 1x1x1 Conv3d (groups 1, no bias) computed as matrix products on CPU.

    An ``nn.Conv3d`` subclass: same ``weight`` (C_out, C_in, 1, 1, 1), same state dict, same
    initialisation; only ``forward`` differs (same result up to float rounding).
    """

    def __init__(self, c_in: int, c_out: int, stride: Sequence[int] = (1, 1, 1)):
        super().__init__(c_in, c_out, kernel_size=1, stride=tuple(stride), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _use_gemm(x, self.weight):
            return super().forward(x)
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return PointwiseConv3dFunction.apply(x, self.weight, tuple(self.stride))
        return pointwise_forward(x, self.weight, tuple(self.stride))
