"""pytorchvideo: ``create_csn`` and the hub's ``csn_r101`` (``models/csn.py``, ``models/hub/csn.py``).

Keys ``blocks.0.conv``, ``blocks.1.res_blocks.0.branch2.conv_a``, ``...branch1_conv``,
``blocks.5.proj``.
"""
from __future__ import annotations

import re

from .records import Fact, Key, SourceFormat, unit_param

def parse_pytorchvideo(k: str) -> Key | None:
    """pytorchvideo create_csn Net (models/csn.py, resnet.py create_res_block)."""
    if m := re.match(r"blocks\.0\.(conv|norm)\.(\w+)$", k):
        return unit_param("stem", (), "stem", m[1] == "conv", m[2])
    if m := re.match(r"blocks\.5\.proj\.(weight|bias)$", k):
        return Key("fc", param="fc_" + m[1])
    m = re.match(r"blocks\.([1-4])\.res_blocks\.(\d+)\.(branch1_conv|branch1_norm|branch2\.(?:conv|norm)_[abc])"
                 r"\.(\w+)$", k)
    if not m:
        return None
    unit = "short" if m[3].startswith("branch1") else m[3][-1]
    return unit_param("block", (int(m[1]) - 1, int(m[2])), unit, "conv" in m[3], m[4])


def detect(keys: set[str]) -> bool:
    return any(".res_blocks." in k for k in keys) or "blocks.0.conv.weight" in keys


FORMAT = SourceFormat(
    name="pytorchvideo", detect=detect, parse_key=parse_pytorchvideo,
    code_facts={
        "bn_eps": Fact(1e-5, "pytorchvideo models/csn.py create_csn: norm=nn.BatchNorm3d"),
        "temporal_stride": Fact((True, True, True), "pytorchvideo models/csn.py create_csn: "
                                "stage_temporal_stride=(1, 2, 2, 2)"),
        "stem_stride_t": Fact(1, "pytorchvideo create_csn: stem_conv_stride=(1, 2, 2)"),
        "pool2": Fact(False, "pytorchvideo create_csn has no pool after conv2"),
    },
    required={"pool1": "--pool1 yes|no (create_csn: stem_pool=None; hub csn_r101: MaxPool3d)",
              "head_pool": "--head-pool T,H,W (create_csn: (1, 7, 7); hub csn_r101: (4, 7, 7))"},
    models={
        "csn_r101": dict(file=r"csn_32x2_r101|csn_r101", blocks=(3, 4, 23, 3),
                         pool1=True, head_pool=(4, 7, 7), frames=32, size=224, rate=2,
                         input_mean=(0.45,) * 3, input_std=(0.225,) * 3, input_order="RGB",
                         where="pytorchvideo models/hub/csn.py csn_r101 (CSN_32x2_R101.pyth)",
                         norm_where="pytorchvideo transforms/transforms_factory.py create_video_transform"),
        "create_csn": dict(pool1=False, head_pool=(1, 7, 7), where="pytorchvideo models/csn.py create_csn defaults"),
    },
    default_norm=((0.45,) * 3, (0.225,) * 3, "pytorchvideo transforms_factory.py defaults"))
