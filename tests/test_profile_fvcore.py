"""The counter equals fvcore's FlopCountAnalysis layer by layer, for every preset.

Conventions that differ, each checked here rather than waved through:
* fvcore counts BatchNorm (eval mode, affine: 2 FLOPs per output element, scale and shift);
  the counter, like the paper, counts convolutions and the classifier only. So a ConvBN
  module is conv + twice its output size in fvcore, and the conv inside it equals the
  counter's row exactly.
* fvcore skips pooling (max-pool, adaptive average pool) and the residual adds: so does the
  counter (0 for pool rows).
* Both count one multiply-add as one FLOP, and neither counts the fc bias.
"""
import math
import warnings

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from backend.csn import build_model, count, list_presets, preset
from backend.csn.spec import plan
from backend.profile.timing import row_modules


# the 101/152-layer presets build 50-120 M parameter nets: end-to-end speed, run in CI
PRESETS = [pytest.param(n, marks=pytest.mark.slow) if n.endswith(("-101", "-152")) else n
           for n in list_presets()]


def by_module(spec):
    model = build_model(spec).eval()
    names = {id(m): n for n, m in model.named_modules()}
    x = torch.randn(1, spec.in_channels, *spec.clip)
    fa = FlopCountAnalysis(model, x)
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flops = fa.by_module()
    rows, _ = row_modules(model, spec)
    return flops, {row: names[id(m)] for row, m in rows.items()}, fa.unsupported_ops()


@pytest.mark.parametrize("name", PRESETS)
def test_counter_equals_fvcore_by_module(name):
    spec = preset(name, frames=8, height=32, width=32, num_classes=7)
    flops, where, unsupported = by_module(spec)
    bn_total = 0
    for layer, p in zip(count(spec).layers, plan(spec)):
        if layer.kind in ("maxpool", "avgpool"):
            assert layer.flops == 0
            if layer.name in where:
                assert flops[where[layer.name]] == 0
            continue
        mod = where[layer.name]
        if layer.kind == "fc":
            assert flops[mod + ".fc"] == layer.flops
            continue
        bn = 2 * layer.c_out * math.prod(p.out_size)      # fvcore's eval-mode affine BatchNorm
        bn_total += bn
        assert flops[mod + ".conv"] == layer.flops, layer.name
        assert flops[mod + ".bn"] == bn, layer.name
        assert flops[mod] == layer.flops + bn, layer.name
    assert flops[""] == count(spec).totals.flops + bn_total
    assert set(unsupported) <= {"aten::add", "aten::max_pool3d", "aten::adaptive_avg_pool3d",
                                "aten::avg_pool3d", "aten::mean"}
