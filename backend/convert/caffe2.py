"""VMZ's Caffe2 blob pickles (``c2/lib/models/builder/video_model.py``, ``r3d_model.py``).

Blobs ``conv1_w``, ``comp_%d_conv_%d[_middle]_w``, ``comp_%d_spatbn_%d[_middle]_{s,b,rm,riv}``,
``shortcut_projection_%d``, ``last_out_L%d``; read by :mod:`.readers` with an unpickler that
builds numpy arrays only.
"""
from __future__ import annotations

import re

from ..csn.spec import KINETICS_MEAN, KINETICS_STD
from .records import Blocks, ConvertError, Fact, Key, SKIP, SourceFormat

_C2_BN = {"s": "weight", "b": "bias", "rm": "mean", "riv": "var"}


def parse_caffe2(k: str) -> Key | None:
    """VMZ Caffe2 blob names (c2/lib/models/builder/video_model.py, r3d_model.py)."""
    if k.endswith(("_momentum", "_grad")) or k in ("model_iter", "lr", "ITER", "iter"):
        return SKIP
    if m := re.match(r"last_out_L\d+_([wb])$", k):
        return Key("fc", param={"w": "fc_weight", "b": "fc_bias"}[m[1]])
    if m := re.match(r"conv1_(w|spatbn_relu_(s|b|rm|riv))$", k):
        return Key("stem", (), "stem", "conv" if m[1] == "w" else _C2_BN[m[2]])
    # add_bottleneck: conv_1, [conv_2_middle (ip '0.3d')], conv_2 or conv_3 (ir '3d-sep' counts
    # twice), conv_N; each with spatbn_N[_middle]. "_middle" sorts before its own conv.
    if m := re.match(r"comp_(\d+)_(conv|spatbn)_(\d+)(_middle)?_(w|s|b|rm|riv)$", k):
        unit = f"{int(m[3]):03d}{'a' if m[4] else 'b'}"
        if m[2] == "conv":
            return Key("block", (int(m[1]),), unit, "conv") if m[5] == "w" else None
        return Key("block", (int(m[1]),), unit, _C2_BN[m[5]]) if m[5] != "w" else None
    if m := re.match(r"shortcut_projection_(\d+)(?:_spatbn_(s|b|rm|riv)|_(w))$", k):
        return Key("block", (int(m[1]),), "short", "conv" if m[3] else _C2_BN[m[2]])
    return None


def group_stages(units: Blocks) -> list[list]:
    """Caffe2 numbers blocks comp_0.. across stages; a stage starts where the width changes."""
    comps = sorted(k[0] for k in units)
    if comps != list(range(len(comps))):
        raise ConvertError(f"caffe2: comp_ indices are not contiguous: {comps}")
    stages: list[list] = []
    for c in comps:
        body, short = units[(c,)]
        if not body or body[-1].conv is None:
            raise ConvertError(f"caffe2: comp_{c} has no conv weights")
        if not stages or body[-1].conv.shape[0] != stages[-1][-1][0][-1].conv.shape[0]:
            stages.append([])
        stages[-1].append((body, short))
    if len(stages) != 4:
        raise ConvertError(f"caffe2: found {len(stages)} stages (by output width), expected 4")
    return stages


def derived_facts(facts: dict[str, Fact]) -> dict[str, Fact]:
    """Caffe2's r3d strides conv_4x / conv_5x in time only for clips long enough."""
    if "temporal_stride" in facts:
        return {}
    f = facts["frames"].value
    return {"temporal_stride": Fact((True, f >= 4, f >= 8), f"VMZ c2 r3d_model.py create_r3d: conv_4x / "
                                    f"conv_5x stride in time for clips of >= 4 / 8 frames ({f})")}


def detect(keys: set[str]) -> bool:
    return "conv1_w" in keys or any(re.match(r"comp_\d+_conv_\d+_w$", k) for k in keys)


FORMAT = SourceFormat(
    name="caffe2", detect=detect, parse_key=parse_caffe2,
    code_facts={
        "bn_eps": Fact(1e-3, "VMZ c2/lib/models/builder/video_model.py add_spatial_bn: epsilon=1e-3"),
        "ip_relu": Fact(False, "VMZ video_model.py add_conv '0.3d' (ip-csn): no ReLU after _middle"),
        "stem_stride_t": Fact(1, "VMZ c2 r3d_model.py create_model: conv1_temporal_stride=1"),
        "pool2": Fact(False, "VMZ c2 r3d_model.py create_r3d has no pool after conv_2x"),
        "input_mean": Fact(KINETICS_MEAN, "VMZ: the PyTorch release converts these blobs unchanged "
                           "(utilities/model_conversion) and normalises as pt/vmz/func/test.py"),
        "input_std": Fact(KINETICS_STD, "VMZ pt/vmz/func/test.py NormalizeVideo"),
        "input_order": Fact("RGB", "VMZ pt/vmz/func/test.py"),
    },
    required={"pool1": "--pool1 yes|no (VMZ c2 create_model use_pool1: default 0, CSN scripts 1)"},
    models={
        "c2_csn": dict(file=r"(ir|ip)_?csn_\d+", pool1=True, frames=32, size=224,
                       where="VMZ c2/tutorials/model_zoo.md CSN models, run with --use_pool1=1 "
                             "(c2/scripts/test_irCSN_152_kinetics.sh)"),
    },
    group_stages=group_stages, derived_facts=derived_facts)
