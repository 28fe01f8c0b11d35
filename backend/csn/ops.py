"""Convolution factory used by the model: one place to choose the conv implementation.

Depthwise 3D convs (groups == C_in == C_out) are the family's hot spot; by default they are
built as :class:`backend.csn.depthwise.DepthwiseConv3d` (an ``nn.Conv3d`` subclass with a
fast backward; same state dict), and 1x1x1 convs with groups 1 as
:class:`backend.csn.pointwise.PointwiseConv3d` (matrix products on CPU; same state dict).
Switch both back to plain ``nn.Conv3d`` with the environment variable
``CSN_DEPTHWISE=native`` or ``set_depthwise_impl("native")``; both are read when the model
is built.
"""
from __future__ import annotations

import os

from torch import nn

from .depthwise import DepthwiseConv3d, is_fast_depthwise
from .pointwise import PointwiseConv3d, is_fast_pointwise

DEPTHWISE_IMPLS: tuple[str, ...] = ("fast", "native")
_impl: str | None = None  # set_depthwise_impl(); None -> $CSN_DEPTHWISE, default "fast"


def set_depthwise_impl(impl: str | None) -> None:
    """Choose the depthwise and pointwise convs built from now on: "fast", "native", or None
    (environment)."""
    global _impl
    if impl is not None and impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise impl must be one of {DEPTHWISE_IMPLS}, got {impl!r}")
    _impl = impl


def get_depthwise_impl() -> str:
    """The depthwise (and pointwise) implementation a model built now gets."""
    if _impl is not None:
        return _impl
    env = os.environ.get("CSN_DEPTHWISE", "fast").strip().lower() or "fast"
    if env not in DEPTHWISE_IMPLS:
        raise ValueError(f"CSN_DEPTHWISE must be one of {DEPTHWISE_IMPLS}, got {env!r}")
    return env


def make_conv3d(c_in: int, c_out: int, kernel, stride, padding, groups: int) -> nn.Conv3d:
    """A bias-free Conv3d; state-dict layout is always that of ``nn.Conv3d``."""
    if get_depthwise_impl() == "fast":
        if is_fast_depthwise(c_in, c_out, kernel, stride, padding, groups):
            return DepthwiseConv3d(c_in, stride)
        if is_fast_pointwise(kernel, padding, groups):
            return PointwiseConv3d(c_in, c_out, stride)
    return nn.Conv3d(c_in, c_out, kernel_size=tuple(kernel), stride=tuple(stride),
                     padding=tuple(padding), groups=groups, bias=False)
