"""Convolution factory used by the model: one place to choose the conv implementation.

Depthwise 3D convs (groups == C_in == C_out) are the family's hot spot; the fast
implementation plugs in here so every block type picks it up.
"""
from __future__ import annotations

from torch import nn


def make_conv3d(c_in: int, c_out: int, kernel, stride, padding, groups: int) -> nn.Conv3d:
    """A bias-free Conv3d; state-dict layout is always that of ``nn.Conv3d``."""
    return nn.Conv3d(c_in, c_out, kernel_size=tuple(kernel), stride=tuple(stride),
                     padding=tuple(padding), groups=groups, bias=False)
