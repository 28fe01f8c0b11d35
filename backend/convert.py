"""Import pretrained CSN / 3D-ResNet checkpoints from other projects into our ArchSpec model.

    python -m backend.convert SRC --out OUT.pt [--model NAME] [--pool1 yes|no] ...

A conversion produces a model that computes the source model's function, or fails with an
error naming what it could not map. Every source tensor must land somewhere, and only one in
each place (``--ignore REGEX`` drops the keys it matches on purpose, mapped or not). The
architecture comes from the tensors' shapes; what tensors cannot show (pools, temporal strides,
head window, BN eps, input normalisation) comes from, in order: a flag, what the file says about
itself (mmaction2 ``meta['cfg']``, a published model's file name), or the peer's code. A fact
the peers' own published configurations set differently (pytorchvideo's stem pool and head
window, VMZ's ``use_pool1``, mmaction2's ``with_pool2``) is never guessed: without a source the
conversion stops and names the flag.
Every fact and where it came from is printed and stored in the checkpoint's ``config``.

Layouts (``--layout``; ``auto`` detects from the key names):

==============  ==============================================================================
pytorchvideo    ``create_csn`` / hub ``csn_r101``: ``blocks.0.conv``, ``blocks.1.res_blocks.0.
                branch2.conv_a``, ``...branch1_conv``, ``blocks.5.proj``.
mmaction2       ``Recognizer3D`` + ``ResNet3dCSN`` + ``I3DHead``: ``backbone.conv1.conv``,
                ``backbone.layer1.0.conv2.0.conv`` (ip: ``conv2.0`` 1x1x1, ``conv2.1`` depthwise),
                ``backbone.layer1.0.downsample.conv``, ``cls_head.fc_cls``.
vmz             VMZ's PyTorch release (torchvision ``VideoResNet``): ``stem.0``, ``layer1.0.
                conv1.0``, ``conv2.0`` (ip: ``conv2.0.0`` / ``conv2.0.2``), ``downsample.0``, ``fc``.
caffe2          VMZ's Caffe2 blob pickles: ``conv1_w``, ``comp_%d_conv_%d[_middle]_w``,
                ``comp_%d_spatbn_%d[_middle]_{s,b,rm,riv}``, ``shortcut_projection_%d``, ``last_out_L%d``.
==============  ==============================================================================

Files are read with ``torch.load(..., weights_only=True)``; Caffe2 pickles with an unpickler
that builds numpy arrays only.
"""
from __future__ import annotations

import argparse
import ast
import pickle
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

from .checkpoint import FORMAT, save_atomic
from .csn import ArchSpec, StageSpec, build_model
from .csn.clipfit import clip_range
from .csn.spec import KINETICS_MEAN, KINETICS_STD, SpecError

OUR_BN_EPS = 1e-5
LABELS_K400 = Path(__file__).resolve().parent / "assets" / "kinetics400_labels.txt"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ConvertError(ValueError):
    """A checkpoint that cannot be converted; the message says why."""


# --- facts the tensors cannot show ----------------------------------------------------------

class Fact(NamedTuple):
    value: Any
    source: str        # "flag --pool1", "file meta['cfg']", "model csn_r101 (...)", "peer code (...)"


#: Per layout: facts fixed by the peer's code, with the file and function they come from.
CODE_FACTS: dict[str, dict[str, Fact]] = {
    "pytorchvideo": {
        "bn_eps": Fact(1e-5, "pytorchvideo models/csn.py create_csn: norm=nn.BatchNorm3d"),
        "temporal_stride": Fact((True, True, True), "pytorchvideo models/csn.py create_csn: "
                                "stage_temporal_stride=(1, 2, 2, 2)"),
        "stem_stride_t": Fact(1, "pytorchvideo create_csn: stem_conv_stride=(1, 2, 2)"),
        "pool2": Fact(False, "pytorchvideo create_csn has no pool after conv2"),
    },
    "vmz": {
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
    "caffe2": {
        "bn_eps": Fact(1e-3, "VMZ c2/lib/models/builder/video_model.py add_spatial_bn: epsilon=1e-3"),
        "ip_relu": Fact(False, "VMZ video_model.py add_conv '0.3d' (ip-csn): no ReLU after _middle"),
        "stem_stride_t": Fact(1, "VMZ c2 r3d_model.py create_model: conv1_temporal_stride=1"),
        "pool2": Fact(False, "VMZ c2 r3d_model.py create_r3d has no pool after conv_2x"),
        "input_mean": Fact(KINETICS_MEAN, "VMZ: the PyTorch release converts these blobs unchanged "
                           "(utilities/model_conversion) and normalises as pt/vmz/func/test.py"),
        "input_std": Fact(KINETICS_STD, "VMZ pt/vmz/func/test.py NormalizeVideo"),
        "input_order": Fact("RGB", "VMZ pt/vmz/func/test.py"),
    },
    "mmaction2": {  # ResNet3dCSN defaults (mmaction/models/backbones/resnet3d_csn.py)
        "bn_eps": Fact(1e-3, "mmaction2 ResNet3dCSN: norm_cfg eps=1e-3"),
        "temporal_stride": Fact((True, True, True), "mmaction2 ResNet3dCSN: temporal_strides=(1, 2, 2, 2)"),
        "ip_relu": Fact(False, "mmaction2 CSNBottleneck3d: ip 1x1x1 ConvModule act_cfg=None"),
        "stem_stride_t": Fact(1, "mmaction2 ResNet3dCSN: conv1_stride_t=1"),
        "pool1": Fact(True, "mmaction2 ResNet3d: with_pool1=True"),
    },
}
#: Facts without a default: the peers' published configurations disagree about them.
REQUIRED: dict[str, dict[str, str]] = {
    "pytorchvideo": {"pool1": "--pool1 yes|no (create_csn: stem_pool=None; hub csn_r101: MaxPool3d)",
                     "head_pool": "--head-pool T,H,W (create_csn: (1, 7, 7); hub csn_r101: (4, 7, 7))"},
    "vmz": {"pool1": "--pool1 yes|no (VMZ ir_csn_152/ip_csn_152 use_pool1; default True)"},
    "caffe2": {"pool1": "--pool1 yes|no (VMZ c2 create_model use_pool1: default 0, CSN scripts 1)"},
    "mmaction2": {"pool2": "--pool2 yes|no (mmaction2 ResNet3d with_pool2: default True, CSN configs False)"},
}
NORM_HINT = "--mean R,G,B --std R,G,B (0-1 scale) and --input-order RGB|BGR"
#: Published models, recognised by --model or the file name (facts from the peers' code).
MODELS: dict[str, dict[str, Any]] = {
    "csn_r101": dict(layout="pytorchvideo", file=r"csn_32x2_r101|csn_r101", blocks=(3, 4, 23, 3),
                     pool1=True, head_pool=(4, 7, 7), frames=32, size=224, rate=2,
                     input_mean=(0.45,) * 3, input_std=(0.225,) * 3, input_order="RGB",
                     where="pytorchvideo models/hub/csn.py csn_r101 (CSN_32x2_R101.pyth)",
                     norm_where="pytorchvideo transforms/transforms_factory.py create_video_transform"),
    "create_csn": dict(layout="pytorchvideo", pool1=False, head_pool=(1, 7, 7),
                       where="pytorchvideo models/csn.py create_csn defaults"),
    "ir_csn_152": dict(layout="vmz", file=r"ir_?csn_152", blocks=(3, 8, 36, 3), pool1=True,
                       frames=32, size=224, where="VMZ pt/vmz/models/csn.py ir_csn_152 (use_pool1=True)"),
    "ip_csn_152": dict(layout="vmz", file=r"ip_?csn_152", blocks=(3, 8, 36, 3), pool1=True,
                       frames=32, size=224, where="VMZ pt/vmz/models/csn.py ip_csn_152 (use_pool1=True)"),
    "c2_csn": dict(layout="caffe2", file=r"(ir|ip)_?csn_\d+", pool1=True, frames=32, size=224,
                   where="VMZ c2/tutorials/model_zoo.md CSN models, run with --use_pool1=1 "
                         "(c2/scripts/test_irCSN_152_kinetics.sh)"),
}


# --- loading --------------------------------------------------------------------------------

_NUMPY_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("__builtin__", "bytes"), ("builtins", "bytes"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Caffe2 blob pickles: a restricted unpickler that builds numpy arrays and nothing else."""

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in _NUMPY_ALLOWED:
            import numpy as np  # noqa: F401  (resolves numpy.core -> numpy._core aliases)
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


_FRAMEWORKS = ("mmengine.", "mmcv.", "mmaction.")


def _unsafe_globals(path: Path, e: Exception) -> list[str]:
    """The globals that keep ``path`` from loading with weights_only, framework classes first
    (torch returns them in no fixed order; the first few are named in the error). Of an
    old-format (pre-zip) file only the one torch's error ``e`` names is known."""
    try:
        found = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - not a zip checkpoint
        found = set(re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(e)))
    return sorted(found, key=lambda g: (not g.startswith(_FRAMEWORKS), g))


def _refuse(path: Path, e: Exception) -> ConvertError:
    blocked = _unsafe_globals(path, e)
    if blocked and blocked[0].startswith(_FRAMEWORKS):
        return ConvertError(
            f"{path}: an mmengine training checkpoint: it pickles {', '.join(blocked[:4])}, which "
            "torch.load(weights_only=True) refuses to build. Strip the training state with "
            "mmaction2's own tool, then convert its output: python tools/deployment/"
            f"publish_model.py {path.name} {path.stem}_published.pth")
    m = re.search(r"WeightsUnpickler error: (.+)", str(e))  # torch's reason, after its advice
    first = m[1] if m else (str(e).splitlines() or [""])[0]
    why = f"it pickles {', '.join(blocked[:4])}" if blocked else f"{type(e).__name__}: {first[:160]}"
    return ConvertError(f"{path}: cannot be read safely with torch.load(weights_only=True) ({why}); "
                        "only plain tensor / numpy-array checkpoints are accepted")


def _read(path: Path):
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types here
        if head[:2] == b"PK" or head[:1] != b"\x80":
            raise _refuse(path, e) from None
        refused = e
    try:  # a raw pickle that torch cannot read: a Caffe2 dict of numpy arrays?
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as e:  # noqa: BLE001
        raise _refuse(path, e) from None
    if not isinstance(obj, dict):  # an old-format torch file: its leading magic number
        raise _refuse(path, refused)
    return obj


@dataclass
class Source:
    """A checkpoint's tensors plus what it says about itself."""
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = ""


def load_source(path: str | Path) -> Source:
    """Read a checkpoint (``weights_only=True``): its flat tensor dict, its ``meta`` (mmaction2)
    and its file name. Unwraps ``model_state`` (pytorchvideo), ``state_dict`` (mmaction2),
    ``model`` and ``blobs`` (Caffe2)."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    obj = _read(path)
    meta = obj.get("meta") if isinstance(obj, dict) and isinstance(obj.get("meta"), dict) else {}
    for key in ("model_state", "state_dict", "model", "blobs"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    out: dict[str, torch.Tensor] = {}
    named: dict[str, str] = {}  # our key -> the file's key
    for key, v in obj.items():
        k = str(key)
        k = k[len("module."):] if k.startswith("module.") else k
        if type(v).__module__ == "numpy" and hasattr(v, "shape"):
            try:
                v = torch.as_tensor(v)
            except (TypeError, RuntimeError, ValueError):
                raise ConvertError(f"{path}: array {k!r} has dtype {v.dtype}, not a tensor type") from None
        if not isinstance(v, torch.Tensor):
            continue
        if k in out:
            raise ConvertError(f"{path}: keys {named[k]!r} and {str(key)!r} both name tensor {k!r}")
        out[k], named[k] = v, str(key)
    if not out:
        raise ConvertError(f"{path}: no tensors found")
    return Source(out, meta, path.name)


def detect_layout(sd: dict[str, torch.Tensor]) -> str:
    keys = set(sd)
    if any(".res_blocks." in k for k in keys) or "blocks.0.conv.weight" in keys:
        return "pytorchvideo"
    if any(k.startswith("backbone.") for k in keys) or "conv1.conv.weight" in keys:
        return "mmaction2"
    if "stem.0.weight" in keys or any(re.match(r"layer\d+\.\d+\.conv1\.0\.weight$", k) for k in keys):
        return "vmz"
    if "conv1_w" in keys or any(re.match(r"comp_\d+_conv_\d+_w$", k) for k in keys):
        return "caffe2"
    sample = ", ".join(sorted(keys)[:6])
    raise ConvertError(f"cannot tell the checkpoint layout from its keys (e.g. {sample}); "
                       f"pass --layout one of {', '.join(PARSERS)}")


# --- per-layout key parsers: one source key -> one typed record ------------------------------

class Key(NamedTuple):
    """Where one source tensor goes. ``block``: (stage, block) or (comp,) for Caffe2, () for the
    stem and the classifier; ``unit`` orders the convs inside a block ("short" = shortcut);
    ``param``: "conv", a BN field (weight, bias, mean, var) or fc_weight / fc_bias."""
    part: str            # stem | block | fc
    block: tuple = ()
    unit: str = ""
    param: str = ""


SKIP = Key("skip")       # bookkeeping tensors (num_batches_tracked, Caffe2 momenta, ...)
_BN = {"weight": "weight", "bias": "bias", "running_mean": "mean", "running_var": "var"}
_C2_BN = {"s": "weight", "b": "bias", "rm": "mean", "riv": "var"}


def _bn(param: str) -> str | None:
    return _BN.get(param)


def _unit_param(part: str, block: tuple, unit: str, is_conv: bool, param: str) -> Key | None:
    if param == "num_batches_tracked":
        return SKIP
    p = ("conv" if param == "weight" else None) if is_conv else _bn(param)
    return Key(part, block, unit, p) if p else None


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
        return _unit_param("stem", (), "stem", m[1] == "0", m[2])
    m = re.match(r"layer([1-4])\.(\d+)\.(conv[123]|downsample)\.(0\.[012]|[01])\.(\w+)$", k)
    if not m or (m[3], m[4]) not in _VMZ_UNITS:
        return None
    unit, is_conv = _VMZ_UNITS[(m[3], m[4])]
    return _unit_param("block", (int(m[1]) - 1, int(m[2])), unit, is_conv, m[5])


def parse_mmaction2(k: str) -> Key | None:
    """mmaction2 Recognizer3D(ResNet3dCSN, I3DHead) (mmaction/models/backbones/resnet3d_csn.py)."""
    if k.startswith("data_preprocessor."):
        return SKIP
    if k in ("cls_head.fc_cls.weight", "cls_head.fc_cls.bias"):
        return Key("fc", param="fc_" + k.rsplit(".", 1)[1])
    k = k[len("backbone."):] if k.startswith("backbone.") else k
    if m := re.match(r"conv1\.(conv|bn)\.(\w+)$", k):
        return _unit_param("stem", (), "stem", m[1] == "conv", m[2])
    m = re.match(r"layer([1-4])\.(\d+)\.(conv1|conv2\.[01]|conv3|downsample)\.(conv|bn)\.(\w+)$", k)
    if not m:
        return None
    unit = "short" if m[3] == "downsample" else {"conv1": "a", "conv2.0": "b0", "conv2.1": "b1",
                                                   "conv3": "c"}[m[3]]
    return _unit_param("block", (int(m[1]) - 1, int(m[2])), unit, m[4] == "conv", m[5])


def parse_pytorchvideo(k: str) -> Key | None:
    """pytorchvideo create_csn Net (models/csn.py, resnet.py create_res_block)."""
    if m := re.match(r"blocks\.0\.(conv|norm)\.(\w+)$", k):
        return _unit_param("stem", (), "stem", m[1] == "conv", m[2])
    if m := re.match(r"blocks\.5\.proj\.(weight|bias)$", k):
        return Key("fc", param="fc_" + m[1])
    m = re.match(r"blocks\.([1-4])\.res_blocks\.(\d+)\.(branch1_conv|branch1_norm|branch2\.(?:conv|norm)_[abc])"
                 r"\.(\w+)$", k)
    if not m:
        return None
    unit = "short" if m[3].startswith("branch1") else m[3][-1]
    return _unit_param("block", (int(m[1]) - 1, int(m[2])), unit, "conv" in m[3], m[4])


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


PARSERS: dict[str, Callable[[str], Key | None]] = {
    "pytorchvideo": parse_pytorchvideo, "mmaction2": parse_mmaction2,
    "vmz": parse_vmz, "caffe2": parse_caffe2,
}
LAYOUTS = tuple(PARSERS)


# --- grouping the keys into the source network's units --------------------------------------

@dataclass
class Unit:
    """One conv (+ its BN) of the source network."""
    conv: torch.Tensor | None = None
    bn: dict[str, torch.Tensor] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)


@dataclass
class Parsed:
    """A source network as ordered units: stem, stages[blocks[(body units, shortcut)]], fc."""
    stem: Unit
    stages: list[list[tuple[list[Unit], Unit | None]]]
    fc_w: torch.Tensor
    fc_b: torch.Tensor
    ignored: list[str]


def _ignored(k: str, ignore: tuple[str, ...]) -> bool:
    return any(re.search(p, k) for p in ignore)


def parse(sd: dict[str, torch.Tensor], layout: str, ignore: tuple[str, ...] = ()) -> Parsed:
    """Every tensor of ``sd`` in its unit, except those ``ignore`` (regular expressions) names,
    mapped or not; an unmapped key, or two keys for one tensor, is an error."""
    if layout not in PARSERS:
        raise ConvertError(f"unknown layout {layout!r}; choose one of {', '.join(PARSERS)}")
    stem, fc, ignored, unmapped, seen = Unit(), {}, [], [], {}
    blocks: dict[tuple, dict[str, Unit]] = defaultdict(dict)
    for k, v in sd.items():
        if _ignored(k, ignore):
            ignored.append(k)
            continue
        key = PARSERS[layout](k)
        if key == SKIP:
            continue
        if key is None:
            unmapped.append(k)
            continue
        if key in seen:
            raise ConvertError(f"source keys {seen[key]} and {k} both map to one tensor of the model; "
                               "pass --ignore REGEX to drop one")
        seen[key] = k
        if key.part == "fc":
            fc[key.param] = v
            continue
        u = stem if key.part == "stem" else blocks[key.block].setdefault(key.unit, Unit())
        if key.param == "conv":
            u.conv = v
        else:
            u.bn[key.param] = v
        u.keys.append(k)
    if unmapped:
        raise ConvertError(f"{len(unmapped)} source tensor(s) have no place in a {layout} CSN: "
                           f"{', '.join(sorted(unmapped)[:12])}{' ...' if len(unmapped) > 12 else ''}; "
                           "pass --ignore REGEX to drop them on purpose")
    if "fc_weight" not in fc or "fc_bias" not in fc:
        raise ConvertError(f"{layout}: classifier weight/bias not found")
    if stem.conv is None:
        raise ConvertError(f"{layout}: stem conv weight not found")
    units = {b: ([u[n] for n in sorted(u) if n != "short"], u.get("short")) for b, u in blocks.items()}
    stages = _caffe2_stages(units) if layout == "caffe2" else _stages(units, layout)
    return Parsed(stem, stages, fc["fc_weight"], fc["fc_bias"], sorted(ignored))


def _stages(units: dict[tuple, tuple], layout: str) -> list[list]:
    by_stage: dict[int, list] = defaultdict(list)
    for (s, b) in sorted(units):
        if b != len(by_stage[s]):
            raise ConvertError(f"{layout}: stage {s + 1} lacks block {len(by_stage[s])}")
        by_stage[s].append(units[(s, b)])
    if sorted(by_stage) != [0, 1, 2, 3]:
        raise ConvertError(f"{layout}: expected 4 stages, found {sorted(by_stage)}")
    return [by_stage[s] for s in range(4)]


def _caffe2_stages(units: dict[tuple, tuple]) -> list[list]:
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


# --- what the file says about itself: mmaction2 meta['cfg'] ---------------------------------

def _literal(node: ast.AST) -> Any:
    """A config value built from literals and ``dict(...)`` calls; nothing is executed."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"
            and not node.args and all(kw.arg for kw in node.keywords)):
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    raise ValueError("not a literal")


def read_config_text(text: str) -> dict[str, Any]:
    """The top-level ``name = literal`` assignments of an mmengine/mmcv config's pretty text."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise ConvertError(f"meta['cfg'] is not a readable config (line {e.lineno})") from None
    out: dict[str, Any] = {}
    for st in tree.body:
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            try:
                out[st.targets[0].id] = _literal(st.value)
            except (ValueError, TypeError):
                pass
    return out


def _expect(cfg: dict, key: str, want: Any, default: Any, where: str) -> None:
    got = cfg.get(key, default)
    got = list(got) if isinstance(got, (list, tuple)) else got
    if got != want:
        raise ConvertError(f"{where}.{key}={got!r} is not expressible in an ArchSpec (supported: {want!r})")


def _num(v: Any, field: str, kind: type = float) -> Any:
    """A config number as ``kind`` (int or float), or an error naming ``field``, not its value."""
    if isinstance(v, bool) or not isinstance(v, int if kind is int else (int, float)):
        raise ConvertError(f"{field}: missing or not {'an integer' if kind is int else 'a number'}")
    return kind(v)


def _nums(v: Any, field: str) -> tuple[float, ...]:
    if not isinstance(v, list) or not v:
        raise ConvertError(f"{field}: missing or not a list of numbers")
    return tuple(_num(x, field) for x in v)


def mmaction2_facts(src: Source) -> dict[str, Fact]:
    """Facts from an mmaction2 checkpoint's ``meta['cfg']`` (mmengine) or ``meta['config']``."""
    key = "cfg" if isinstance(src.meta.get("cfg"), str) else "config"
    text = src.meta.get(key)
    if not isinstance(text, str):
        return {}
    cfg, at = read_config_text(text), f"file meta['{key}']"
    model = cfg.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("backbone"), dict):
        raise ConvertError(f"{at} has no model.backbone dict")
    bb, head = model["backbone"], model.get("cls_head") or {}
    if not isinstance(head, dict):
        raise ConvertError(f"{at}: model.cls_head is not a dict")
    if bb.get("type") != "ResNet3dCSN":
        raise ConvertError(f"{at}: backbone type {bb.get('type')!r}; only ResNet3dCSN converts")
    for k, want, default in (("spatial_strides", [1, 2, 2, 2], [1, 2, 2, 2]),
                             ("dilations", [1, 1, 1, 1], [1, 1, 1, 1]), ("style", "pytorch", "pytorch"),
                             ("conv1_stride_s", 2, 2), ("pool1_stride_s", 2, 2), ("pool1_stride_t", 1, 1),
                             ("non_local", [0, 0, 0, 0], [0, 0, 0, 0]), ("num_stages", 4, 4),
                             ("out_indices", [3], [3])):
        _expect(bb, k, want, default, "model.backbone")
    _expect(head, "type", "I3DHead", "I3DHead", "model.cls_head")
    _expect(head, "spatial_type", "avg", "avg", "model.cls_head")
    ts = bb.get("temporal_strides", [1, 2, 2, 2])
    ts = list(ts) if isinstance(ts, list) else [ts]
    if len(ts) != 4 or ts[0] != 1 or any(t not in (1, 2) for t in ts):
        raise ConvertError(f"{at}: model.backbone.temporal_strides={ts} is not expressible")
    norm = bb.get("norm_cfg")
    if norm is not None and not isinstance(norm, dict):
        raise ConvertError(f"{at}: model.backbone.norm_cfg is not a dict")
    eps = 1e-3 if norm is None else _num(norm.get("eps", 1e-5),  # BN3d's own default: 1e-5
                                         f"{at} model.backbone.norm_cfg.eps")
    facts = {"pool1": Fact(bool(bb.get("with_pool1", True)), f"{at} backbone.with_pool1"),
             "pool2": Fact(bool(bb.get("with_pool2", True)), f"{at} backbone.with_pool2"
                           + ("" if "with_pool2" in bb else " (unset: ResNet3d default True)")),
             "temporal_stride": Fact(tuple(t == 2 for t in ts[1:]), f"{at} backbone.temporal_strides"),
             "stem_stride_t": Fact(_num(bb.get("conv1_stride_t", 1), f"{at} model.backbone.conv1_stride_t", int),
                                   f"{at} backbone.conv1_stride_t"),
             "bn_eps": Fact(eps, f"{at} backbone.norm_cfg")}
    facts.update(_mm_norm(cfg, model, at))
    facts.update(_mm_clip(cfg, at))
    return facts


def _mm_norm(cfg: dict, model: dict, at: str) -> dict[str, Fact]:
    """mmaction2 1.x ``data_preprocessor`` (to_rgb flips BGR<->RGB before mean/std) or 0.x
    ``img_norm_cfg``; values on the 0-255 scale."""
    pre = model.get("data_preprocessor") or cfg.get("data_preprocessor")
    if isinstance(pre, dict):
        _expect(pre, "format_shape", "NCTHW", "NCHW", "model.data_preprocessor")
        flip, where = bool(pre.get("to_rgb", False)), f"{at} model.data_preprocessor"
    elif isinstance(cfg.get("img_norm_cfg"), dict):
        pre = cfg["img_norm_cfg"]
        flip, where = bool(pre.get("to_bgr", False)), f"{at} img_norm_cfg"
    else:
        return {}
    mean, std = pre.get("mean"), pre.get("std")
    if mean is None and std is None:  # no normalisation: the model sees 0-255 pixels
        mean, std = [0.0] * 3, [1.0] * 3
    mean, std = _nums(mean, f"{where} mean"), _nums(std, f"{where} std")  # mmengine: both or neither
    return {"input_mean": Fact(tuple(m / 255 for m in mean), where + " mean / 255"),
            "input_std": Fact(tuple(s / 255 for s in std), where + " std / 255"),
            "input_order": Fact("BGR" if flip else "RGB", where + (" (channels flipped)" if flip
                                                                    else " (decoders give RGB)"))}


def _mm_clip(cfg: dict, at: str) -> dict[str, Fact]:
    out: dict[str, Fact] = {}
    for name in ("val_pipeline", "test_pipeline"):
        steps = cfg.get(name)
        for step in steps if isinstance(steps, list) else []:
            if isinstance(step, dict) and step.get("type") == "SampleFrames" and "frames" not in out:
                w = f"{at} {name} SampleFrames."
                out["frames"] = Fact(_num(step.get("clip_len"), w + "clip_len", int), w + "clip_len")
                out["rate"] = Fact(_num(step.get("frame_interval", 1), w + "frame_interval", int),
                                   w + "frame_interval")
            if isinstance(step, dict) and step.get("type") == "CenterCrop" and "size" not in out:
                w = f"{at} {name} CenterCrop.crop_size"
                out["size"] = Fact(_num(step.get("crop_size"), w, int), w)
    return out


# --- resolving the facts --------------------------------------------------------------------

FLAG_FACTS = ("pool1", "pool2", "temporal_stride", "head_pool", "bn_eps", "ip_relu", "stem_stride_t",
              "input_mean", "input_std", "input_order", "frames", "size", "rate")
_DEFAULT_NORM = {  # what a file that says nothing most likely used; printed as a warning
    "pytorchvideo": ((0.45,) * 3, (0.225,) * 3, "pytorchvideo transforms_factory.py defaults"),
    "mmaction2": (IMAGENET_MEAN, IMAGENET_STD, "mmaction2 configs/_base_/models/ircsn_r152.py; its "
                  "sports1m / from-scratch configs use VMZ's values instead"),
}


def find_model(layout: str, name: str | None, file_name: str) -> str | None:
    """``--model`` if given (checked against the layout), else a published model the file name matches."""
    if name:
        if name not in MODELS or MODELS[name]["layout"] != layout:
            known = [m for m, d in MODELS.items() if d["layout"] == layout]
            raise ConvertError(f"--model {name!r} is not a {layout} model; known: {', '.join(known)}")
        return name
    low = Path(file_name).stem.lower()
    hits = [m for m, d in MODELS.items() if d["layout"] == layout and d.get("file")
            and re.search(d["file"], low)]
    return hits[0] if hits else None


def resolve_facts(layout: str, src: Source, model: str | None,
                  flags: dict[str, Any]) -> tuple[dict[str, Fact], list[str]]:
    """Every fact the spec needs beyond the tensors, with its source; warnings for guesses."""
    facts = dict(CODE_FACTS[layout])
    if model:
        m = MODELS[model]
        for k in (k for k in FLAG_FACTS if k in m):
            where = m.get("norm_where", m["where"]) if k.startswith("input_") else m["where"]
            facts[k] = Fact(m[k], f"model {model}: {where}")
    if layout == "mmaction2":
        facts.update(mmaction2_facts(src))
    facts.update({k: Fact(v, f"flag --{k.replace('_', '-')}") for k, v in flags.items() if v is not None})
    missing = [hint for k, hint in REQUIRED[layout].items() if k not in facts]
    if missing:
        models = [m for m, d in MODELS.items() if d["layout"] == layout]
        raise ConvertError(f"{src.name or 'the checkpoint'} does not say {len(missing)} architecture "
                           f"fact(s) its weights cannot show: pass {'; '.join(missing)}"
                           + (f"; or name the model: --model {'|'.join(models)}" if models else ""))
    warnings = []
    for k, v in (("frames", 32), ("size", 224), ("rate", 2)):
        if k not in facts:
            facts[k] = Fact(v, f"default --{k} (the file does not say; the clip it is counted at)")
    if layout == "caffe2" and "temporal_stride" not in facts:
        f = facts["frames"].value
        facts["temporal_stride"] = Fact((True, f >= 4, f >= 8), f"VMZ c2 r3d_model.py create_r3d: "
                                        f"conv_4x / conv_5x stride in time for clips of >= 4 / 8 frames ({f})")
    if "input_mean" not in facts or "input_std" not in facts:
        mean, std, why = _DEFAULT_NORM[layout]
        facts.setdefault("input_mean", Fact(mean, f"guess: {why}"))
        facts.setdefault("input_std", Fact(std, f"guess: {why}"))
        warnings.append(f"input normalisation guessed (mean {list(facts['input_mean'].value)}, std "
                        f"{list(facts['input_std'].value)}: {why}); pass {NORM_HINT} if training used others")
    facts.setdefault("input_order", Fact("RGB", "default: decoded frames are RGB"))
    facts.setdefault("ip_relu", Fact(False, "no ip blocks in this layout"))
    return facts, warnings


# --- inference of the spec -----------------------------------------------------------------

def _block_type(body: list[Unit], where: str) -> tuple[str, int, int]:
    """(block type, inner, groups) from the shapes of a block's convs."""
    if any(u.conv is None for u in body):
        raise ConvertError(f"{where}: a BN without its conv ({[k for u in body for k in u.keys][:4]})")
    shapes = [tuple(u.conv.shape) for u in body]
    ks = [s[2:] for s in shapes]
    if len(body) == 3 and ks == [(1, 1, 1), (3, 3, 3), (1, 1, 1)]:
        inner, per_group = shapes[0][0], shapes[1][1]
        if per_group == 1 and inner > 1:
            return "bottleneck-D", inner, 1
        if per_group == inner:
            return "bottleneck", inner, 1
        return "bottleneck-G", inner, inner // per_group
    if len(body) == 4 and ks == [(1, 1, 1), (1, 1, 1), (3, 3, 3), (1, 1, 1)] and shapes[2][1] == 1:
        return "ip", shapes[0][0], 1
    if len(body) == 2 and ks == [(3, 3, 3), (3, 3, 3)]:
        per_group, c_out = shapes[0][1], shapes[0][0]
        if per_group == shapes[1][1] == c_out:
            return "simple", c_out, 1
        return "simple-G", c_out, c_out // per_group
    raise ConvertError(f"{where}: unsupported block (conv shapes {shapes})")


def infer_spec(p: Parsed, facts: dict[str, Fact], name: str, model: str | None = None) -> ArchSpec:
    """The ArchSpec of the parsed tensors plus the resolved facts."""
    stages = []
    for si, stage in enumerate(p.stages):
        sname = f"conv{si + 2}"
        types = {_block_type(body, f"{sname}_{bi + 1}") for bi, (body, _) in enumerate(stage)}
        if len(types) != 1:
            raise ConvertError(f"{sname}: blocks differ ({sorted(types)}); not representable")
        (block, inner, groups), = types
        stages.append(StageSpec(blocks=len(stage), width=stage[0][0][-1].conv.shape[0], inner=inner,
                                block=block, groups=groups))
    if model and "blocks" in MODELS[model] and tuple(s.blocks for s in stages) != MODELS[model]["blocks"]:
        raise ConvertError(f"model {model} has blocks {MODELS[model]['blocks']}, the weights "
                           f"{tuple(s.blocks for s in stages)}: wrong --model or file name")
    ts = facts["temporal_stride"].value
    ts = (ts,) * 3 if isinstance(ts, bool) else tuple(bool(t) for t in ts)
    if len(ts) != 3:
        raise ConvertError(f"temporal_stride: expected 3 flags (conv3, conv4, conv5), got {len(ts)}")
    stages = [stages[0]] + [replace(s, temporal_stride=t) for s, t in zip(stages[1:], ts)]
    stem = p.stem.conv
    if tuple(stem.shape[3:]) != (7, 7):
        raise ConvertError(f"stem kernel {tuple(stem.shape[2:])}: only (t, 7, 7) stems are expressible")
    head_pool = facts.get("head_pool")
    f = lambda k: facts[k].value  # noqa: E731
    spec = ArchSpec(name=name, stages=stages, frames=f("frames"), height=f("size"), width=f("size"),
                    in_channels=stem.shape[1], num_classes=p.fc_w.shape[0], stem_width=stem.shape[0],
                    stem_kernel_t=stem.shape[2], stem_stride_t=f("stem_stride_t"), pool1=f("pool1"),
                    pool2=f("pool2"), head="conv" if head_pool else "fc",
                    head_pool=tuple(head_pool.value) if head_pool else (0, 0, 0), ip_relu=f("ip_relu"),
                    input_mean=tuple(f("input_mean")), input_std=tuple(f("input_std")),
                    input_order=f("input_order"))
    try:
        return spec.validate()
    except SpecError as e:
        raise ConvertError(f"inferred spec is invalid: {e}") from None


# --- mapping onto our state dict -----------------------------------------------------------

def _fill_unit(out: dict, prefix: str, u: Unit, eps_src: float, where: str) -> None:
    if u.conv is None:
        raise ConvertError(f"{where}: conv weight missing (have {u.keys})")
    out[f"{prefix}.conv.weight"] = u.conv
    missing = [f for f in ("weight", "bias", "mean", "var") if f not in u.bn]
    if missing:
        raise ConvertError(f"{where}: BN {missing} missing (source keys {u.keys})")
    out[f"{prefix}.bn.weight"], out[f"{prefix}.bn.bias"] = u.bn["weight"], u.bn["bias"]
    out[f"{prefix}.bn.running_mean"] = u.bn["mean"]
    # fold the eps difference: (x-m)/sqrt(v+eps_src) == (x-m)/sqrt((v+eps_src-eps_ours)+eps_ours)
    out[f"{prefix}.bn.running_var"] = u.bn["var"].double() + (eps_src - OUR_BN_EPS)
    out[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)


def map_state_dict(p: Parsed, spec: ArchSpec, eps_src: float) -> dict[str, torch.Tensor]:
    """Our model's state dict from the parsed source; every shape checked."""
    model = build_model(spec)
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    _fill_unit(out, "conv1", p.stem, eps_src, "stem")
    for si, stage in enumerate(p.stages):
        sname = f"conv{si + 2}"
        for bi, (body, short) in enumerate(stage):
            block, where = getattr(model, sname)[bi], f"{sname}_{bi + 1}"
            if len(block.roles) != len(body):
                raise ConvertError(f"{where}: {len(body)} convs in the source, {len(block.roles)} in ours")
            for role, u in zip(block.roles, body):
                _fill_unit(out, f"{sname}.{bi}.{role}", u, eps_src, f"{where}.{role}")
            if (short is None) != (block.shortcut is None):
                raise ConvertError(f"{where}: projection shortcut "
                                   f"{'missing in source' if short is None else 'unexpected'}")
            if short is not None:
                _fill_unit(out, f"{sname}.{bi}.shortcut", short, eps_src, f"{where}.shortcut")
    fw = p.fc_w[:, :, None, None, None] if spec.head == "conv" and p.fc_w.dim() == 2 else p.fc_w
    out["head.fc.weight"], out["head.fc.bias"] = fw, p.fc_b
    bad = [f"{k}: source {tuple(out[k].shape)} vs ours {tuple(target[k].shape)}"
           for k in sorted(set(out) & set(target)) if tuple(out[k].shape) != tuple(target[k].shape)]
    missing, extra = sorted(set(target) - set(out)), sorted(set(out) - set(target))
    if missing or extra or bad:
        msg = ([f"missing {len(missing)} tensor(s): {', '.join(missing[:10])}"] if missing else []) + \
              ([f"unexpected: {', '.join(extra[:10])}"] if extra else []) + \
              ([f"shape mismatch: {'; '.join(bad[:10])}"] if bad else [])
        raise ConvertError(" | ".join(msg))
    return {k: out[k].to(target[k].dtype).contiguous().clone() for k in target}


# --- the conversion -------------------------------------------------------------------------

@dataclass
class ConversionReport:
    layout: str
    model: str | None
    spec: ArchSpec
    facts: dict[str, Fact]
    warnings: list[str]
    ignored: list[str]

    def summary(self) -> str:
        st = ", ".join(f"{s.blocks}x{s.block}({s.inner}->{s.width})" for s in self.spec.stages)
        lines = [f"layout {self.layout}{f' (model {self.model})' if self.model else ''}: stem "
                 f"{self.spec.stem_width}ch k_t={self.spec.stem_kernel_t}, stages {st}, "
                 f"{self.spec.num_classes} classes, head {self.spec.head}"]
        lines += [f"  {k} = {_plain(f.value)}  [{f.source}]" for k, f in sorted(self.facts.items())]
        lines += [f"WARNING: {w}" for w in self.warnings]
        if self.ignored:
            lines.append(f"dropped {len(self.ignored)} source key(s) named by --ignore: "
                         f"{', '.join(self.ignored[:12])}")
        return "\n".join(lines)

    def config(self) -> dict[str, Any]:
        return {"layout": self.layout, "model": self.model, "ignored_keys": list(self.ignored),
                "facts": {k: {"value": _plain(f.value), "source": f.source} for k, f in self.facts.items()},
                "warnings": list(self.warnings)}


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def convert_state_dict(src: Source | dict[str, torch.Tensor], layout: str = "auto", *,
                       name: str | None = None, model: str | None = None, ignore: tuple[str, ...] = (),
                       **flags: Any) -> tuple[ArchSpec, dict[str, torch.Tensor], ConversionReport]:
    """Convert a source checkpoint. ``flags``: any of :data:`FLAG_FACTS` (None = not given)."""
    src = src if isinstance(src, Source) else Source(dict(src))
    bad = set(flags) - set(FLAG_FACTS)
    if bad:
        raise ConvertError(f"unknown option(s) {sorted(bad)}")
    ignore = tuple(ignore)
    for pattern in ignore:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConvertError(f"--ignore {pattern!r} is not a regular expression: {e}") from None
    if layout == "auto":
        layout = detect_layout({k: v for k, v in src.tensors.items() if not _ignored(k, ignore)})
    try:
        p = parse(src.tensors, layout, ignore)
        model = find_model(layout, model, src.name)
        facts, warnings = resolve_facts(layout, src, model, flags)
        spec = infer_spec(p, facts, name or model or f"imported-{layout}", model)
        ours = map_state_dict(p, spec, float(facts["bn_eps"].value))
    except ConvertError as e:  # name the keys --ignore took from the model: the likely cause
        to = PARSERS.get(layout)
        used = sorted(k for k in src.tensors if _ignored(k, ignore) and to and to(k) not in (None, SKIP))
        if not used:
            raise
        raise ConvertError(f"{e} (--ignore dropped {len(used)} key(s) that map into the model: "
                           f"{', '.join(used[:8])}{' ...' if len(used) > 8 else ''})") from None
    facts = {**facts, "clip_range": Fact(clip_range(spec), "counted: the smallest clip its "
                                          "strides and head window fit")}
    return spec, ours, ConversionReport(layout, model, spec, facts, warnings, p.ignored)


def default_classes(num_classes: int) -> list[str]:
    if num_classes == 400 and LABELS_K400.is_file():
        return LABELS_K400.read_text().splitlines()
    return [f"class_{i}" for i in range(num_classes)]


def convert_checkpoint(src: str | Path, out: str | Path, layout: str = "auto", *,
                       classes: list[str] | None = None, **kw: Any) -> ConversionReport:
    """Convert ``src`` and write a ``csn-explorer/1`` checkpoint to ``out`` (atomically)."""
    spec, ours, report = convert_state_dict(load_source(src), layout, **kw)
    classes = classes or default_classes(spec.num_classes)
    if len(classes) != spec.num_classes:
        raise ConvertError(f"{len(classes)} class names for {spec.num_classes} outputs")
    config = {"imported_from": str(src), "frames": spec.frames, "size": spec.height,
              "rate": int(report.facts["rate"].value), **report.config()}
    save_atomic({"format": FORMAT, "model": ours, "spec": spec.to_dict(), "classes": list(classes),
                 "epoch": 0, "metrics": {}, "config": config}, out)
    return report


def _csv(kind: Callable, n: int, name: str, single_ok: bool = False) -> Callable[[str], Any]:
    """An argparse type for ``n`` comma-separated values (or one, with ``single_ok``)."""
    def parse_list(text: str):
        try:
            vals = tuple(kind(v.strip()) for v in text.split(","))
        except ValueError:
            vals = ()
        if single_ok and len(vals) == 1:
            return vals[0]
        if len(vals) != n:
            raise argparse.ArgumentTypeError(f"--{name}: expected {'one or ' if single_ok else ''}{n} "
                                             f"comma-separated values, got {text!r}")
        return vals
    return parse_list


def _yes(v: str) -> bool:
    if v.lower() not in ("yes", "no"):
        raise ValueError(v)
    return v.lower() == "yes"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend.convert", description=__doc__.split("\n")[0],
                                 epilog="Flags override what the file says; see README 'Importing "
                                        "pretrained checkpoints'.")
    ap.add_argument("src")
    ap.add_argument("--out", required=True)
    ap.add_argument("--layout", default="auto", choices=("auto",) + LAYOUTS)
    ap.add_argument("--model", choices=tuple(MODELS), help="a published model (default: from the file name)")
    ap.add_argument("--labels", help="text file, one class name per line (default: Kinetics-400 for 400 classes)")
    ap.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                    help="drop source keys matching REGEX, mapped or not; they are listed in the summary "
                         "(otherwise an unmapped key, or two keys for one tensor, is an error)")
    yn = ("yes", "no")
    ap.add_argument("--pool1", choices=yn)
    ap.add_argument("--pool2", choices=yn)
    ap.add_argument("--ip-relu", choices=yn)
    ap.add_argument("--temporal-stride", type=_csv(_yes, 3, "temporal-stride", True), metavar="yes|no|F,F,F",
                    help="temporal stride at conv3_1..conv5_1: one yes/no, or three (e.g. yes,yes,no)")
    ap.add_argument("--head-pool", type=_csv(int, 3, "head-pool"), metavar="T,H,W",
                    help="average-pool window (stride 1) before the classifier, logits averaged")
    ap.add_argument("--bn-eps", type=float)
    ap.add_argument("--stem-stride-t", type=int)
    ap.add_argument("--mean", type=_csv(float, 3, "mean"), metavar="R,G,B", help="0-1 scale")
    ap.add_argument("--std", type=_csv(float, 3, "std"), metavar="R,G,B", help="0-1 scale")
    ap.add_argument("--input-order", choices=("RGB", "BGR"))
    ap.add_argument("--frames", type=int)
    ap.add_argument("--size", type=int)
    ap.add_argument("--rate", type=int)
    a = ap.parse_args(argv)
    b = lambda v: None if v is None else v == "yes"  # noqa: E731
    try:
        classes = Path(a.labels).read_text().splitlines() if a.labels else None
        rep = convert_checkpoint(a.src, a.out, a.layout, classes=classes, model=a.model, ignore=tuple(a.ignore),
                                 pool1=b(a.pool1), pool2=b(a.pool2), ip_relu=b(a.ip_relu),
                                 temporal_stride=a.temporal_stride, head_pool=a.head_pool, bn_eps=a.bn_eps,
                                 stem_stride_t=a.stem_stride_t, input_mean=a.mean, input_std=a.std,
                                 input_order=a.input_order, frames=a.frames, size=a.size, rate=a.rate)
    except (ConvertError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(rep.summary())
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    from backend.cli import run_cli
    raise SystemExit(run_cli(main))
