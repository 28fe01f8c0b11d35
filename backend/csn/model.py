"""``build_model(spec)``: the torch network an :class:`ArchSpec` describes.

The module tree is built from the same ``plan(spec)`` walk the counter uses:

    CSN
      conv1   ConvBN (3x7x7 stem)          (N, 3, T, H, W) -> (N, 64, T, H/2, W/2)
      pool1   MaxPool3d 1x3x3 / Identity   -> (N, 64, T, H/4, W/4)
      conv2 .. conv5  Sequential[ResBlock]  state-dict keys: conv3.0.conv_b.conv.weight
      pool2   MaxPool3d 2x1x1 / Identity after conv2 (spec.pool2, mmaction2's with_pool2)
      head    ClassifierHead (fc or 1x1x1 conv)  -> (N, K) logits

No in-place ops on activations (Captum hooks need out-of-place ReLU and sums).
"""
from __future__ import annotations

from itertools import groupby

import torch
from torch import nn

from .ops import make_conv3d
from .spec import ArchSpec, LayerPlan, plan


class ConvBN(nn.Module):
    """Conv3d (no bias) -> BatchNorm3d -> optional ReLU, as after every conv in the paper."""

    def __init__(self, p: LayerPlan):
        super().__init__()
        self.conv = make_conv3d(p.c_in, p.c_out, p.kernel, p.stride, p.padding, p.groups)
        self.bn = nn.BatchNorm3d(p.c_out)
        self.act = nn.ReLU() if p.relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ResBlock(nn.Module):
    """Residual block: ordered ConvBN units named by role, optional projection shortcut."""

    def __init__(self, layers: list[LayerPlan]):
        super().__init__()
        body = [p for p in layers if p.role != "shortcut"]
        short = [p for p in layers if p.role == "shortcut"]
        for p in body:
            self.add_module(p.role, ConvBN(p))
        self.roles = [p.role for p in body]
        self.shortcut = ConvBN(short[0]) if short else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for role in self.roles:
            out = getattr(self, role)(out)
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(out + identity)


class ClassifierHead(nn.Module):
    """fc: global average pool + Linear. conv: [avg-pool] + 1x1x1 conv, logits averaged."""

    def __init__(self, spec: ArchSpec, pool: LayerPlan | None, fc: LayerPlan):
        super().__init__()
        self.kind = spec.head
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else nn.Identity()
        if self.kind == "fc":
            self.pool = nn.AdaptiveAvgPool3d(1)
            self.fc = nn.Linear(fc.c_in, fc.c_out)
        else:  # a fixed stride-1 window; plan() refused clips it does not fit
            self.fc = nn.Conv3d(fc.c_in, fc.c_out, kernel_size=1)
        self._pool_kernel = spec.head_pool if pool is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "fc":
            return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))   # (N, K)
        if self._pool_kernel is not None:
            k = tuple(p or n for p, n in zip(self._pool_kernel, x.shape[2:]))   # 0: whole map
            if not torch.jit.is_tracing() and any(a > b for a, b in zip(k, x.shape[2:])):
                raise ValueError(f"head_pool {tuple(self._pool_kernel)} is larger than conv5's "
                                 f"output {tuple(x.shape[2:])}: the clip is too small for this head")
            x = nn.functional.avg_pool3d(x, k, stride=1)
        return self.fc(self.dropout(x)).mean(dim=(2, 3, 4))              # (N, K)


class CSN(nn.Module):
    """A 3D ResNet / CSN: stem, four stages, head. Accepts (N, C, T, H, W)."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        self.centre_time = spec.input_centre == "temporal"
        layers = list(plan(spec))  # validates; raises SpecError with the layer's name
        by_name = {p.name: p for p in layers}
        self.conv1 = ConvBN(by_name["conv1"])
        p1 = by_name.get("pool1")
        self.pool1 = (nn.MaxPool3d(p1.kernel, p1.stride, p1.padding) if p1 is not None
                      else nn.Identity())
        p2 = by_name.get("pool2")
        self.pool2 = nn.MaxPool3d(p2.kernel, p2.stride, p2.padding) if p2 is not None else nn.Identity()
        blocks = [p for p in layers if p.block]
        for stage, stage_layers in groupby(blocks, key=lambda p: p.stage):
            seq = [ResBlock(list(bl)) for _, bl in groupby(stage_layers, key=lambda p: p.block)]
            self.add_module(stage, nn.Sequential(*seq))
        self.head = ClassifierHead(spec, by_name.get("head.pool"), by_name["fc"])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [self.conv2, self.conv3, self.conv4, self.conv5]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) -> final feature map (N, C5, T/8, H/32, W/32)."""
        if self.centre_time:
            x = x - x.mean(dim=2, keepdim=True)
        x = self.conv2(self.pool1(self.conv1(x)))
        x = self.pool2(x)
        for s in self.stages[1:]:
            x = s(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(spec: ArchSpec) -> CSN:
    """The network ``spec`` describes (validated first; invalid specs raise SpecError)."""
    return CSN(spec)
