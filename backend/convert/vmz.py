"""VMZ's PyTorch release: torchvision ``VideoResNet`` as ``pt/vmz/models/csn.py`` builds it.

Keys ``stem.0``, ``layer1.0.conv1.0``, ``conv2.0`` (ip: ``conv2.0.0`` / ``conv2.0.2``),
``downsample.0``, ``fc``.
"""
from __future__ import annotations

import re

from ..csn.spec import KINETICS_MEAN, KINETICS_STD
from .records import Fact, Key, SourceFormat, unit_param

#: VMZ (group, index) -> (unit, is_conv). torchvision Bottleneck: convN = Sequential(conv, BN,
#: ReLU); VMZ's IPConv3DDepthwise makes conv2.0 a Sequential(1x1x1, BN, depthwise).
_VMZ_UNITS = {("conv1", "0"): ("1", True), ("conv1", "1"): ("1", False),
              ("conv2", "0"): ("2b", True), ("conv2", "0.0"): ("2a", True), ("conv2", "0.1"): ("2a", False),
              ("conv2", "0.2"): ("2b", True), ("conv2", "1"): ("2b", False),
              ("conv3", "0"): ("3", True), ("conv3", "1"): ("3", False),
              ("downsample", "0"): ("short", True), ("downsample", "1"): ("short", False)}


def parse_vmz(k: str) -> Key | None:
    """torchvision VideoResNet as VMZ builds it (pt/vmz/models/csn.py, utils.py)."""
    if k in ("fc.weight", "fc.bias"):
        return Key("fc", param="fc_" + k[3:])
    if m := re.match(r"stem\.([01])\.(\w+)$", k):
        return unit_param("stem", (), "stem", m[1] == "0", m[2])
    m = re.match(r"layer([1-4])\.(\d+)\.(conv[123]|downsample)\.(0\.[012]|[01])\.(\w+)$", k)
    if not m or (m[3], m[4]) not in _VMZ_UNITS:
        return None
    unit, is_conv = _VMZ_UNITS[(m[3], m[4])]
    return unit_param("block", (int(m[1]) - 1, int(m[2])), unit, is_conv, m[5])


def detect(keys: set[str]) -> bool:
    return "stem.0.weight" in keys or any(re.match(r"layer\d+\.\d+\.conv1\.0\.weight$", k) for k in keys)


FORMAT = SourceFormat(
    name="vmz", detect=detect, parse_key=parse_vmz,
    code_facts={
        "bn_eps": Fact(1e-3, "VMZ pt/vmz/models/utils.py _generic_resnet: m.eps = 1e-3"),
        "temporal_stride": Fact((True, True, True), "VMZ pt/vmz/models/utils.py Conv3DDepthwise."
                                "get_downsample_stride: (stride, stride, stride)"),
        "ip_relu": Fact(False, "VMZ pt/vmz/models/utils.py IPConv3DDepthwise: ReLU commented out"),
        "stem_stride_t": Fact(1, "VMZ BasicStem_Pool: conv stride (1, 2, 2)"),
        "pool2": Fact(False, "torchvision VideoResNet has no pool after layer1"),
        "input_mean": Fact(KINETICS_MEAN, "VMZ pt/vmz/func/test.py NormalizeVideo"),
        "input_std": Fact(KINETICS_STD, "VMZ pt/vmz/func/test.py NormalizeVideo"),
        "input_order": Fact("RGB", "VMZ pt/vmz/func/test.py (torchvision read_video: RGB)"),
    },
    required={"pool1": "--pool1 yes|no (VMZ ir_csn_152/ip_csn_152 use_pool1; default True)"},
    models={
        "ir_csn_152": dict(file=r"ir_?csn_152", blocks=(3, 8, 36, 3), pool1=True, frames=32, size=224,
                           where="VMZ pt/vmz/models/csn.py ir_csn_152 (use_pool1=True)"),
        "ip_csn_152": dict(file=r"ip_?csn_152", blocks=(3, 8, 36, 3), pool1=True, frames=32, size=224,
                           where="VMZ pt/vmz/models/csn.py ip_csn_152 (use_pool1=True)"),
    })
