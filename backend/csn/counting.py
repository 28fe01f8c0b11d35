"""Analytic cost of an :class:`ArchSpec` (paper eq. 1-3), one row per layer, no forward pass.

Conventions (see README "Counting conventions"):
- ``params``: conv and fc *weights* only, eq. (1) ``C_out * C_in/G * k^3``. BN (2 per channel)
  and biases (fc / conv-head) are reported separately as ``bn_params`` and ``bias_params``.
- ``flops``: multiply-adds, the paper's FLOP, eq. (2) with THW the layer's *output* voxels
  (what a strided conv computes). ``torch.utils.flop_counter`` counts 2 per multiply-add.
  Pooling, BN, ReLU and the residual sums are not counted (neither does the paper).
- ``interactions``: eq. (3) ``C_out * C(C_in/G, 2)`` for every conv layer (stem, blocks,
  shortcuts). The classifier is not a conv of the network and is not counted: Table 2's
  interaction totals (e.g. 5.42 G for ir-CSN-50) exclude it (with it: 6.26 G).
"""
from __future__ import annotations

from typing import Any, NamedTuple

from .spec import ArchSpec, LayerPlan, plan

UNITS: dict[str, str] = {
    "params": "weights of conv and fc layers (BN and biases reported separately)",
    "flops": "multiply-adds (the paper's FLOPs; torch's FlopCounterMode counts 2 per multiply-add)",
    "interactions": "channel-interaction pairs of conv layers, paper eq. (3)",
}


class LayerCount(NamedTuple):
    name: str
    kind: str
    stage: str
    c_in: int
    c_out: int
    groups: int
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    out_size: tuple[int, int, int]
    params: int
    flops: int
    interactions: int
    bn_params: int
    bias_params: int

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        for k in ("kernel", "stride", "out_size"):
            d[k] = list(d[k])
        return d


class Totals(NamedTuple):
    params: int
    flops: int
    interactions: int
    bn_params: int
    bias_params: int

    @property
    def all_params(self) -> int:
        """Every trainable tensor element of the built module."""
        return self.params + self.bn_params + self.bias_params

    @property
    def torch_flops(self) -> int:
        """FLOPs as torch.utils.flop_counter counts them (2 per multiply-add)."""
        return 2 * self.flops


class CountReport(NamedTuple):
    spec: ArchSpec
    layers: list[LayerCount]
    totals: Totals

    def by_stage(self) -> dict[str, Totals]:
        out: dict[str, list[int]] = {}
        for l in self.layers:
            acc = out.setdefault(l.stage, [0, 0, 0, 0, 0])
            acc[0] += l.params; acc[1] += l.flops; acc[2] += l.interactions
            acc[3] += l.bn_params; acc[4] += l.bias_params
        return {k: Totals(*v) for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "unit": dict(UNITS),
            "totals": self.totals._asdict(),
            "layers": [l.to_dict() for l in self.layers],
        }


def layer_cost(p: LayerPlan) -> LayerCount:
    """Eq. (1)-(3) for one planned layer."""
    t, h, w = p.out_size
    if p.kind in ("maxpool", "avgpool"):
        return LayerCount(p.name, p.kind, p.stage, p.c_in, p.c_out, p.groups, p.kernel, p.stride,
                          p.out_size, 0, 0, 0, 0, 0)
    kt, kh, kw = p.kernel
    fan_in = p.c_in // p.groups
    params = p.c_out * fan_in * kt * kh * kw                      # eq. (1)
    flops = params * t * h * w                                    # eq. (2), output voxels
    interactions = 0 if p.kind == "fc" else p.c_out * (fan_in * (fan_in - 1) // 2)  # eq. (3)
    return LayerCount(p.name, p.kind, p.stage, p.c_in, p.c_out, p.groups, p.kernel, p.stride,
                      p.out_size, params, flops, interactions,
                      2 * p.c_out if p.bn else 0, p.c_out if p.bias else 0)


def count(spec: ArchSpec) -> CountReport:
    """Per-layer and total params, multiply-adds and channel interactions of ``spec``."""
    layers = []
    seen: dict[tuple, LayerCount] = {}   # repeated blocks: same shapes, same cost
    for p in plan(spec):
        key = p[1:10]
        c = seen.get(key)
        if c is None:
            c = seen[key] = layer_cost(p)
            layers.append(c)
        else:
            layers.append(tuple.__new__(LayerCount, (p.name,) + c[1:]))

    totals = Totals(sum(l.params for l in layers), sum(l.flops for l in layers),
                    sum(l.interactions for l in layers), sum(l.bn_params for l in layers),
                    sum(l.bias_params for l in layers))
    return CountReport(spec, layers, totals)
