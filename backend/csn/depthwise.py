"""Fast depthwise 3x3x3 convolution (groups == C_in == C_out), forward and backward.

PyTorch's CPU depthwise 3D conv is fast only in the forward pass on channels_last_3d
tensors; its backward (both gradients) runs at a few GFLOP/s. :class:`DepthwiseConv3d` keeps
``nn.Conv3d``'s parameters and state-dict layout (it *is* an ``nn.Conv3d``) and, when a
gradient is needed, runs :class:`DepthwiseConv3dFunction`:

* forward: ``F.conv3d`` on channels_last_3d input (the fast oneDNN depthwise path);
* input gradient: stride 1 -> itself a depthwise conv, the output gradient convolved with
  the spatially flipped kernel; stride 2 -> a numba kernel on CPU that gathers only the taps
  that exist (elsewhere: the output gradient dilated with zeros to the input's size, then the
  same stride-1 flipped conv; never the slow ``conv_transpose3d``);
* weight gradient: a numba kernel on CPU (float32/float64) that reads input and output
  gradient once in channels-last order; elsewhere (CUDA, half types, no numba) PyTorch's
  own ``convolution_backward``.

Without autograd (inference, ``torch.no_grad``), on the meta device, or under a
``TorchDispatchMode`` such as ``FlopCounterMode``, it is plain ``F.conv3d`` (channels-last
input where that is faster), so FLOP counting and exporting see an ordinary convolution.

The CUDA path is device-generic but was not measured or tested on a GPU.
"""
from __future__ import annotations

import os
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils._python_dispatch import _get_current_dispatch_mode

_CL = torch.channels_last_3d

try:  # numba is optional: without it the weight gradient falls back to PyTorch's
    if os.environ.get("CSN_DEPTHWISE_NUMBA", "1") == "0":
        raise ImportError("disabled by CSN_DEPTHWISE_NUMBA=0")
    import numba as _numba

    from ._dw_numba import dw_input_grad as _nb_input_grad
    from ._dw_numba import dw_weight_grad as _nb_weight_grad
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is absent
    _numba = None
    _nb_weight_grad = _nb_input_grad = None
    HAVE_NUMBA = False


def is_fast_depthwise(c_in: int, c_out: int, kernel: Sequence[int], stride: Sequence[int],
                      padding: Sequence[int], groups: int) -> bool:
    """Whether a conv is one :class:`DepthwiseConv3d` implements (3x3x3, pad 1, stride 1/2)."""
    return (groups > 1 and groups == c_in == c_out and tuple(kernel) == (3, 3, 3)
            and tuple(padding) == (1, 1, 1) and all(s in (1, 2) for s in stride))


def _disable_numba(err: Exception) -> None:
    global HAVE_NUMBA
    HAVE_NUMBA = False
    warnings.warn(f"numba depthwise kernel failed ({err!r}); using PyTorch's weight gradient",
                  RuntimeWarning, stacklevel=3)


def _weight_grad(x: torch.Tensor, gy: torch.Tensor, weight: torch.Tensor,
                 stride: tuple[int, int, int]) -> torch.Tensor:
    """d loss / d weight, shape (C, 1, 3, 3, 3)."""
    c = x.shape[1]
    if _numba_ok(x, gy):
        _set_numba_threads()
        threads = _numba.get_num_threads()
        xn = x.permute(0, 2, 3, 4, 1).contiguous().numpy()     # N T H W C (no copy if cl)
        gn = gy.permute(0, 2, 3, 4, 1).contiguous().numpy()
        rows = gn.shape[0] * gn.shape[1] * gn.shape[2]
        chunks = max(1, min(rows, 4 * threads))
        try:
            gw = _nb_weight_grad(xn, gn, *stride, 1, 1, 1, chunks)  # (27, C) float64
        except Exception as e:  # noqa: BLE001 - e.g. no writable numba cache: use torch's
            _disable_numba(e)
        else:
            return torch.from_numpy(gw).to(weight.dtype).t().reshape(c, 1, 3, 3, 3)
    return torch.ops.aten.convolution_backward(
        gy, x, weight, None, stride, (1, 1, 1), (1, 1, 1), False, (0, 0, 0), c,
        [False, True, False])[1]


def _numba_ok(*ts: torch.Tensor) -> bool:
    return (HAVE_NUMBA and all(t.device.type == "cpu" for t in ts)
            and ts[0].dtype in (torch.float32, torch.float64) and all(t.dtype == ts[0].dtype for t in ts))


def _set_numba_threads() -> None:
    """numba's threads to torch's count. Starting numba's OpenMP pool resets the OpenMP count
    torch reads (to every core unless OMP_NUM_THREADS is set), so torch's is put back."""
    n = torch.get_num_threads()
    _numba.set_num_threads(max(1, min(n, _numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _input_grad(gy: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int, int],
                in_shape: torch.Size) -> torch.Tensor:
    """d loss / d input. Stride 1: a depthwise conv of gy with the flipped kernel (oneDNN's
    fast channels-last path). Strided: a numba gather over the taps that exist on CPU, else the
    same conv on gy dilated with zeros to the input's size."""
    c = weight.shape[0]
    if stride != (1, 1, 1) and _numba_ok(gy, weight):
        _set_numba_threads()
        gn = gy.permute(0, 2, 3, 4, 1).contiguous().numpy()          # N To Ho Wo C (cl: no copy)
        wn = weight.detach().reshape(c, 27).t().contiguous().numpy()  # (27, C)
        try:
            gx = _nb_input_grad(gn, wn, *in_shape[2:], *stride, 1, 1, 1)
        except Exception as e:  # noqa: BLE001
            _disable_numba(e)
        else:
            return torch.from_numpy(gx).permute(0, 4, 1, 2, 3)          # channels_last_3d view
    wf = weight.flip(2, 3, 4)
    if stride != (1, 1, 1):
        st, sh, sw = stride
        dil = gy.new_zeros(in_shape).contiguous(memory_format=_CL)
        to, ho, wo = gy.shape[2:]
        dil[:, :, :(to - 1) * st + 1:st, :(ho - 1) * sh + 1:sh, :(wo - 1) * sw + 1:sw] = gy
        gy = dil
    return F.conv3d(gy, wf, None, 1, 1, 1, c)


class DepthwiseConv3dFunction(torch.autograd.Function):
    """y = depthwise_conv3d(x, weight), kernel 3x3x3, padding 1; fast backward (see module doc)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                stride: tuple[int, int, int]) -> torch.Tensor:
        ctx.stride = tuple(stride)
        # keep the caller's tensor (already kept by the op before): a channels-last copy would
        # be a second copy of the activation until backward, which re-lays it out if needed
        ctx.save_for_backward(x, weight)
        return F.conv3d(x.contiguous(memory_format=_CL), weight, None, stride, 1, 1, weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: torch.Tensor):
        x, weight = ctx.saved_tensors
        gy = gy.contiguous(memory_format=_CL)
        gx = _input_grad(gy, weight, ctx.stride, x.shape) if ctx.needs_input_grad[0] else None
        gw = _weight_grad(x, gy, weight, ctx.stride) if ctx.needs_input_grad[1] else None
        return gx, gw, None


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor,
                     stride: Sequence[int] = (1, 1, 1)) -> torch.Tensor:
    """Functional form: depthwise 3x3x3 conv, padding 1, fast forward and backward."""
    stride = tuple(int(s) for s in stride)
    if (x.device.type == "meta" or _get_current_dispatch_mode() is not None
            or torch.jit.is_scripting() or torch.jit.is_tracing()):
        return F.conv3d(x, weight, None, stride, 1, 1, weight.shape[0])
    if not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        return F.conv3d(x.contiguous(memory_format=_CL), weight, None, stride, 1, 1,
                        weight.shape[0])
    dev = x.device.type
    if torch.is_autocast_enabled(dev):  # cast outside the Function: autograd casts grads back
        dt = torch.get_autocast_dtype(dev)
        with torch.autocast(dev, enabled=False):
            return DepthwiseConv3dFunction.apply(x.to(dt), weight.to(dt), stride)
    return DepthwiseConv3dFunction.apply(x, weight, stride)


class DepthwiseConv3d(nn.Conv3d):
    """Depthwise 3x3x3 Conv3d (no bias) with a fast backward.

    An ``nn.Conv3d`` subclass: same ``weight`` (C, 1, 3, 3, 3), same state dict, same
    initialisation; only ``forward`` differs (same result up to float rounding).
    """

    def __init__(self, channels: int, stride: Sequence[int] = (1, 1, 1)):
        super().__init__(channels, channels, kernel_size=3, stride=tuple(stride), padding=1,
                         groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv3d(x, self.weight, self.stride)
