"""Import pretrained CSN / 3D-ResNet checkpoints from other projects into our ArchSpec model.

Layouts (``--layout``; ``auto`` detects from the key names):

==============  ==============================================================================
pytorchvideo    ``create_csn`` / ``csn_r101``: ``blocks.0.conv``, ``blocks.1.res_blocks.0.
                branch2.conv_a``, ``...branch1_conv``, ``blocks.5.proj``. BN eps 1e-5.
mmaction2       ``ResNet3dCSN`` (ir / ip): ``backbone.conv1.conv``, ``backbone.layer1.0.conv2.0.
                conv`` (ip: ``conv2.0`` 1x1x1 without ReLU, ``conv2.1`` depthwise),
                ``backbone.layer1.0.downsample.conv``, ``cls_head.fc_cls``. BN eps 1e-3.
vmz             VMZ's PyTorch release (torchvision ``VideoResNet``): ``stem.0``, ``layer1.0.
                conv1.0``, ``conv2.0`` (ip: ``conv2.0.0`` / ``conv2.0.2``), ``downsample.0``,
                ``fc``. BN eps 1e-3 (set after construction, not in the state dict).
caffe2          VMZ's Caffe2 blobs: ``conv1_w``, ``comp_%d_conv_%d_w``, ``comp_%d_spatbn_%d_
                {s,b,rm,riv}``, ``shortcut_projection_%d[_spatbn]``, ``last_out_L400_{w,b}``.
==============  ==============================================================================

The architecture (depth, widths, block type, stem kernel, classes) is inferred from the
tensors; every tensor's shape is checked against the model our spec builds. What the
weights cannot tell (BN eps, pool1, temporal strides, ReLU inside ip blocks) comes from each
layout's defaults and can be overridden. A different BN eps is folded into the running
variance, so the converted model computes the same function in eval mode.
Files are read with ``torch.load(..., weights_only=True)`` only.
"""
from __future__ import annotations

import argparse
import pickle
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .csn import ArchSpec, StageSpec, build_model
from .csn.spec import SpecError

LAYOUTS = ("pytorchvideo", "mmaction2", "vmz", "caffe2")
OUR_BN_EPS = 1e-5
LABELS_K400 = Path(__file__).resolve().parent / "assets" / "kinetics400_labels.txt"

#: What the weights cannot tell, per layout (overridable).
LAYOUT_DEFAULTS: dict[str, dict[str, Any]] = {
    "pytorchvideo": dict(bn_eps=1e-5, pool1=True, temporal_stride=(True, True, False), ip_relu=True,
                         mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225)),
    "mmaction2": dict(bn_eps=1e-3, pool1=True, temporal_stride=True, ip_relu=False,
                      mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    "vmz": dict(bn_eps=1e-3, pool1=True, temporal_stride=True, ip_relu=False,
                mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989)),
    "caffe2": dict(bn_eps=1e-3, pool1=True, temporal_stride=True, ip_relu=False,
                   mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989)),
}
LAYOUT_NOTES: dict[str, list[str]] = {
    "pytorchvideo": [
        "pytorchvideo's create_csn uses temporal strides (1, 2, 2, 1): conv5_1 does not stride in "
        "time (the spec's conv5 stage has temporal_stride=false)",
        "pytorchvideo's head averages logits over AvgPool3d windows (stride = kernel); mapped to "
        "global average + fc, identical when the final map is a multiple of the pool kernel",
    ],
    "mmaction2": ["assumes the CSN configs' with_pool2=False (pool2 has no weights to detect)"],
    "vmz": [],
    "caffe2": ["Caffe2 '_riv' blobs are read as running variance; input is assumed RGB with "
               "VMZ's PyTorch mean/std"],
}


class ConvertError(ValueError):
    """A checkpoint that cannot be converted; the message says why."""


@dataclass
class BN:
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor


@dataclass
class Unit:
    """One conv (+ its BN) of the source network."""
    conv: torch.Tensor | None = None
    bn: dict[str, torch.Tensor] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)


@dataclass
class Parsed:
    """A source network as ordered units: stem, stages[blocks[body units, shortcut]], fc."""
    stem: Unit
    stages: list[list[tuple[list[Unit], Unit | None]]]
    fc_w: torch.Tensor
    fc_b: torch.Tensor
    fc_keys: list[str]
    unused: list[str]


@dataclass
class ConversionReport:
    layout: str
    spec: ArchSpec
    options: dict[str, Any]
    notes: list[str]
    unexpected: list[str]

    def summary(self) -> str:
        st = ", ".join(f"{s.blocks}x{s.block}({s.inner}->{s.width})" for s in self.spec.stages)
        lines = [f"layout {self.layout}: stem {self.spec.stem_width}ch k_t={self.spec.stem_kernel_t}, "
                 f"stages {st}, {self.spec.num_classes} classes, head {self.spec.head}",
                 f"assumed: {self.options}"]
        lines += [f"note: {n}" for n in self.notes]
        if self.unexpected:
            lines.append(f"ignored {len(self.unexpected)} source key(s): {', '.join(self.unexpected[:12])}"
                         + (" ..." if len(self.unexpected) > 12 else ""))
        return "\n".join(lines)


# --- loading -------------------------------------------------------------------------------

_NUMPY_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("__builtin__", "bytes"), ("builtins", "bytes"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Caffe2 blob pickles: a restricted unpickler that builds numpy arrays and nothing else
    (the same allow-list idea as ``torch.load(weights_only=True)``, which cannot read raw pickles)."""

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in _NUMPY_ALLOWED:
            import numpy as np  # noqa: F401  (resolves numpy.core -> numpy._core aliases)
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _read(path: Path):
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"PK" or head[:1] != b"\x80":   # a torch zip file (or torch legacy format)
        return torch.load(path, map_location="cpu", weights_only=True)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a torch file: maybe a Caffe2 pickle of numpy arrays
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()


def load_source(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``weights_only=True`` and return its flat tensor dict.

    Unwraps ``model_state`` (pytorchvideo), ``state_dict`` (mmaction2), ``model`` and
    ``blobs`` (Caffe2 pickles: raw pickles that torch.load cannot read are read by a restricted
    unpickler that only reconstructs numpy arrays).
    """
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    try:
        obj = _read(path)
    except Exception as e:  # noqa: BLE001 - torch raises many types here
        raise ConvertError(f"{path}: cannot be read safely with torch.load(weights_only=True) "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                           "only plain tensor / numpy-array checkpoints are accepted") from None
    for key in ("model_state", "state_dict", "model", "blobs"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        k = str(k)
        if k.startswith("module."):
            k = k[len("module."):]
        if isinstance(v, torch.Tensor):
            out[k] = v
        elif type(v).__module__ == "numpy" and hasattr(v, "shape"):
            out[k] = torch.as_tensor(v)
    if not out:
        raise ConvertError(f"{path}: no tensors found")
    return out


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
                       f"pass --layout one of {', '.join(LAYOUTS)}")


# --- per-layout parsers: key -> (where, unit id, param) ---------------------------------------
# ``where`` is ("stem",), ("block", stage, block), ("fc",); unit id orders units in a block
# ("short" = projection shortcut); param is "conv" or a BN field.

_BN_FIELDS = {"weight": "weight", "bias": "bias", "running_mean": "mean", "running_var": "var",
              "num_batches_tracked": None}
_C2_BN = {"s": "weight", "b": "bias", "rm": "mean", "riv": "var"}


def _field(param: str, conv: bool = False) -> str:
    """The target field of a source parameter: "conv" for a conv weight, else its BN field
    ("skip" for num_batches_tracked, "?" for anything unknown)."""
    return "conv" if conv else (_BN_FIELDS.get(param, "?") or "skip")


def _parse_key(layout: str, k: str):
    """Return (where, unit, param), "skip", or None (unexpected)."""
    if layout == "vmz":
        if k == "fc.weight" or k == "fc.bias":
            return ("fc",), "fc", k.split(".")[1]
        m = re.match(r"stem\.(\d+)\.(\w+)$", k)
        if m:
            return ("stem",), "stem", _field(m[2], m[1] == "0")
        m = re.match(r"layer(\d)\.(\d+)\.(conv\d|downsample)\.([\d.]+)\.(\w+)$", k)
        if not m:
            return None
        where = ("block", int(m[1]) - 1, int(m[2]))
        group, sub, param = m[3], m[4], m[5]
        if group == "downsample":
            return where, "short", _field(param, sub == "0")
        # conv{g}.0[.i] holds the convs (ip: conv2.0.0 1x1, conv2.0.1 BN, conv2.0.2 depthwise);
        # conv{g}.1 is the BN of the group's last conv
        if sub == "1":
            return where, f"{group}.~last", _field(param)
        if sub == "0":
            return where, f"{group}.0", "conv" if param == "weight" else "?"
        m2 = re.match(r"0\.(\d+)$", sub)
        if not m2:
            return None
        i = int(m2[1])  # even: conv, odd: the BN after it
        if i % 2 == 0:
            return where, f"{group}.{i // 2}", "conv" if param == "weight" else "?"
        return where, f"{group}.{i // 2}", _field(param)
    if layout == "mmaction2":
        k2 = k[len("backbone."):] if k.startswith("backbone.") else k
        if k2.startswith("cls_head.fc_cls."):
            return ("fc",), "fc", k2.rsplit(".", 1)[1]
        m = re.match(r"conv1\.(conv|bn)\.(\w+)$", k2)
        if m:
            return ("stem",), "stem", _field(m[2], m[1] == "conv")
        m = re.match(r"layer(\d)\.(\d+)\.(conv\d(?:\.\d+)?|downsample)\.(conv|bn)\.(\w+)$", k2)
        if not m:
            return None
        where = ("block", int(m[1]) - 1, int(m[2]))
        unit = "short" if m[3] == "downsample" else m[3] + ("" if "." in m[3] else ".0")
        if m[4] == "conv":
            return where, unit, "conv" if m[5] == "weight" else "?"
        return where, unit, _field(m[5])
    if layout == "pytorchvideo":
        m = re.match(r"blocks\.0\.(conv|norm)\.(\w+)$", k)
        if m:
            return ("stem",), "stem", _field(m[2], m[1] == "conv")
        m = re.match(r"blocks\.(\d+)\.proj\.(weight|bias)$", k)
        if m:
            return ("fc",), "fc", m[2]
        m = re.match(r"blocks\.(\d+)\.res_blocks\.(\d+)\.(branch1_conv|branch1_norm|branch2\.(?:conv|norm)_[a-z])\.(\w+)$", k)
        if not m:
            return None
        where = ("block", int(m[1]) - 1, int(m[2]))
        part = m[3]
        unit = "short" if part.startswith("branch1") else "b." + part[-1]
        if "conv" in part:
            return where, unit, "conv" if m[4] == "weight" else "?"
        return where, unit, _field(m[4])
    if layout == "caffe2":
        if k.endswith(("_momentum", "_grad")) or k in ("model_iter", "lr", "ITER", "iter"):
            return "skip"
        m = re.match(r"last_out_L\d+_([wb])$", k)
        if m:
            return ("fc",), "fc", {"w": "weight", "b": "bias"}[m[1]]
        m = re.match(r"conv1_(w|spatbn_relu_(s|b|rm|riv))$", k)
        if m:
            return ("stem",), "stem", "conv" if m[1] == "w" else _C2_BN[m[2]]
        m = re.match(r"comp_(\d+)_(conv|spatbn)_(\d+)_(w|s|b|rm|riv)$", k)
        if m:
            where = ("comp", int(m[1]))
            if m[2] == "conv":
                return where, f"c.{int(m[3]):03d}", "conv" if m[4] == "w" else "?"
            return where, f"c.{int(m[3]):03d}", _C2_BN.get(m[4], "?")
        m = re.match(r"shortcut_projection_(\d+)(?:_spatbn_(s|b|rm|riv)|_(w))$", k)
        if m:
            return ("comp", int(m[1])), "short", "conv" if m[3] else _C2_BN[m[2]]
        return None
    raise ConvertError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def parse(sd: dict[str, torch.Tensor], layout: str) -> Parsed:
    """Group the source tensors into ordered units (stem, blocks, fc)."""
    stem = Unit()
    blocks: dict[tuple, dict[str, Unit]] = defaultdict(dict)
    fc: dict[str, torch.Tensor] = {}
    fc_keys: list[str] = []
    unused: list[str] = []
    for k, v in sd.items():
        r = _parse_key(layout, k)
        if r == "skip":
            continue
        if r is None or r[2] in ("?", None):
            unused.append(k)
            continue
        where, unit, param = r
        if param == "skip":
            continue
        if where[0] == "fc":
            fc[param] = v
            fc_keys.append(k)
            continue
        u = stem if where[0] == "stem" else blocks[where[1:]].setdefault(unit, Unit())
        if param == "conv":
            u.conv = v
        else:
            u.bn[param] = v
        u.keys.append(k)
    # vmz: "conv2.~last" is the BN of the last conv of group conv2
    for units in blocks.values():
        for name in [n for n in units if n.endswith(".~last")]:
            group = name.split(".")[0]
            convs = sorted((n for n in units if n.startswith(group + ".") and n != name
                            and units[n].conv is not None), key=_natural)
            if not convs:
                raise ConvertError(f"{units[name].keys[0]}: BN without its conv")
            units[convs[-1]].bn.update(units[name].bn)
            units[convs[-1]].keys += units[name].keys
            del units[name]
    if "weight" not in fc or "bias" not in fc:
        raise ConvertError(f"{layout}: classifier weight/bias not found")
    if stem.conv is None:
        raise ConvertError(f"{layout}: stem conv weight not found")
    stages: list[list[tuple[list[Unit], Unit | None]]]
    if layout == "caffe2":
        stages = _caffe2_stages(blocks)
    else:
        by_stage: dict[int, list] = defaultdict(list)
        for (s, b) in sorted(blocks):
            units = blocks[(s, b)]
            body = [units[n] for n in sorted((n for n in units if n != "short"), key=_natural)]
            by_stage[s].append((body, units.get("short")))
        if sorted(by_stage) != [0, 1, 2, 3]:
            raise ConvertError(f"{layout}: expected 4 stages, found {sorted(by_stage)}")
        stages = [by_stage[s] for s in range(4)]
    return Parsed(stem, stages, fc["weight"], fc["bias"], fc_keys, sorted(unused))


def _caffe2_stages(blocks):
    comps = sorted(k[0] for k in blocks)
    if comps != list(range(len(comps))):
        raise ConvertError(f"caffe2: comp_ indices are not contiguous: {comps}")
    stages: list[list] = []
    prev_width = None
    for c in comps:
        units = blocks[(c,)]
        body = [units[n] for n in sorted((n for n in units if n != "short"), key=_natural)]
        if not body or body[-1].conv is None:
            raise ConvertError(f"caffe2: comp_{c} has no conv weights")
        width = body[-1].conv.shape[0]
        if prev_width is not None and width != prev_width:
            stages.append([])
        if not stages:
            stages.append([])
        stages[-1].append((body, units.get("short")))
        prev_width = width
    if len(stages) != 4:
        raise ConvertError(f"caffe2: found {len(stages)} stages (by output width), expected 4")
    return stages


# --- inference of the spec -----------------------------------------------------------------

def _block_type(body: list[Unit], where: str) -> tuple[str, int, int]:
    """(block type, inner, groups) from the shapes of a block's convs."""
    shapes = [tuple(u.conv.shape) for u in body]
    ks = [s[2:] for s in shapes]
    if len(body) == 3 and ks[0] == (1, 1, 1) and ks[1] == (3, 3, 3) and ks[2] == (1, 1, 1):
        inner = shapes[0][0]
        per_group = shapes[1][1]
        if per_group == 1 and inner > 1:
            return "bottleneck-D", inner, 1
        if per_group == inner:
            return "bottleneck", inner, 1
        return "bottleneck-G", inner, inner // per_group
    if len(body) == 4 and ks == [(1, 1, 1), (1, 1, 1), (3, 3, 3), (1, 1, 1)] and shapes[2][1] == 1:
        return "ip", shapes[0][0], 1
    if len(body) == 2 and ks == [(3, 3, 3), (3, 3, 3)]:
        per_group = shapes[0][1]
        c_out = shapes[0][0]
        if per_group == shapes[1][1] == c_out:
            return "simple", c_out, 1
        return "simple-G", c_out, c_out // per_group
    raise ConvertError(f"{where}: unsupported block (conv shapes {shapes})")


def infer_spec(p: Parsed, *, name: str, frames: int, size: int, pool1: bool,
               temporal_stride: bool | Sequence[bool], ip_relu: bool) -> ArchSpec:
    """``temporal_stride``: one flag for conv3..conv5, or three (one per stage)."""
    per_stage: list[bool | None] = [None] * 4
    if not isinstance(temporal_stride, bool):
        flags = [bool(v) for v in temporal_stride]
        if len(flags) != 3:
            raise ConvertError(f"temporal_stride: expected 3 flags (conv3, conv4, conv5), got {len(flags)}")
        per_stage, temporal_stride = [None, *flags], True
    stages = []
    for si, stage in enumerate(p.stages):
        sname = f"conv{si + 2}"
        types = {_block_type(body, f"{sname}_{bi + 1}") for bi, (body, _) in enumerate(stage)}
        if len(types) != 1:
            raise ConvertError(f"{sname}: blocks differ ({sorted(types)}); not representable")
        (block, inner, groups), = types
        width = stage[0][0][-1].conv.shape[0]
        stages.append(StageSpec(blocks=len(stage), width=width, inner=inner, block=block,
                                groups=groups, temporal_stride=per_stage[si]))
    w = p.fc_w
    head = "fc" if w.dim() == 2 else "conv"
    stem = p.stem.conv
    spec = ArchSpec(name=name, stages=stages, frames=frames, height=size, width=size,
                    in_channels=stem.shape[1], num_classes=w.shape[0], stem_width=stem.shape[0],
                    stem_kernel_t=stem.shape[2], pool1=pool1, temporal_stride=temporal_stride,
                    head=head, ip_relu=ip_relu)
    try:
        return spec.validate()
    except SpecError as e:
        raise ConvertError(f"inferred spec is invalid: {e}") from None


# --- mapping onto our state dict -----------------------------------------------------------

def _fill_unit(out: dict, prefix: str, u: Unit, eps_src: float, where: str, bn_required: bool = True) -> None:
    if u.conv is None:
        raise ConvertError(f"{where}: conv weight missing (have {u.keys})")
    out[f"{prefix}.conv.weight"] = u.conv
    missing = [f for f in ("weight", "bias", "mean", "var") if f not in u.bn]
    if missing:
        raise ConvertError(f"{where}: BN {missing} missing (source keys {u.keys})")
    out[f"{prefix}.bn.weight"] = u.bn["weight"]
    out[f"{prefix}.bn.bias"] = u.bn["bias"]
    out[f"{prefix}.bn.running_mean"] = u.bn["mean"]
    # fold the eps difference: (x-m)/sqrt(v+eps_src) == (x-m)/sqrt((v+eps_src-eps_ours)+eps_ours)
    out[f"{prefix}.bn.running_var"] = u.bn["var"].float() + (eps_src - OUR_BN_EPS)
    out[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)


def map_state_dict(p: Parsed, spec: ArchSpec, eps_src: float) -> dict[str, torch.Tensor]:
    """Our model's state dict from the parsed source; every shape checked."""
    model = build_model(spec)
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    _fill_unit(out, "conv1", p.stem, eps_src, "stem")
    for si, stage in enumerate(p.stages):
        sname = f"conv{si + 2}"
        seq = getattr(model, sname)
        for bi, (body, short) in enumerate(stage):
            block = seq[bi]
            where = f"{sname}_{bi + 1}"
            if len(block.roles) != len(body):
                raise ConvertError(f"{where}: {len(body)} convs in the source, {len(block.roles)} in ours")
            for role, u in zip(block.roles, body):
                _fill_unit(out, f"{sname}.{bi}.{role}", u, eps_src, f"{where}.{role}")
            if (short is None) != (block.shortcut is None):
                raise ConvertError(f"{where}: projection shortcut {'missing in source' if short is None else 'unexpected'}")
            if short is not None:
                _fill_unit(out, f"{sname}.{bi}.shortcut", short, eps_src, f"{where}.shortcut")
    fw = p.fc_w
    if spec.head == "conv" and fw.dim() == 2:
        fw = fw[:, :, None, None, None]
    out["head.fc.weight"], out["head.fc.bias"] = fw, p.fc_b
    missing = sorted(set(target) - set(out))
    unexpected = sorted(set(out) - set(target))
    bad = [f"{k}: source {tuple(out[k].shape)} vs ours {tuple(target[k].shape)}"
           for k in sorted(set(out) & set(target)) if tuple(out[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or bad:
        msg = []
        if missing:
            msg.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:10])}")
        if unexpected:
            msg.append(f"unexpected: {', '.join(unexpected[:10])}")
        if bad:
            msg.append(f"shape mismatch: {'; '.join(bad[:10])}")
        raise ConvertError(" | ".join(msg))
    return {k: out[k].to(target[k].dtype).contiguous().clone() for k in target}


def convert_state_dict(sd: dict[str, torch.Tensor], layout: str = "auto", *, name: str | None = None,
                       frames: int = 32, size: int = 224, strict: bool = False,
                       **overrides: Any) -> tuple[ArchSpec, dict[str, torch.Tensor], ConversionReport]:
    """Convert a source state dict. ``overrides``: bn_eps, pool1, temporal_stride, ip_relu."""
    if layout == "auto":
        layout = detect_layout(sd)
    if layout not in LAYOUTS:
        raise ConvertError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    bad = set(overrides) - {"bn_eps", "pool1", "temporal_stride", "ip_relu", "mean", "std"}
    if bad:
        raise ConvertError(f"unknown option(s) {sorted(bad)}")
    opts = dict(LAYOUT_DEFAULTS[layout])
    opts.update({k: v for k, v in overrides.items() if v is not None})
    p = parse(sd, layout)
    if strict and p.unused:
        raise ConvertError(f"unexpected source key(s): {', '.join(p.unused[:20])}")
    spec = infer_spec(p, name=name or f"imported-{layout}", frames=frames, size=size,
                      pool1=opts["pool1"], temporal_stride=opts["temporal_stride"],
                      ip_relu=opts["ip_relu"])
    ours = map_state_dict(p, spec, float(opts["bn_eps"]))
    notes = list(LAYOUT_NOTES[layout])
    if opts["bn_eps"] != OUR_BN_EPS:
        notes.append(f"BN eps {opts['bn_eps']} folded into running_var (ours uses {OUR_BN_EPS})")
    return spec, ours, ConversionReport(layout, spec, opts, notes, p.unused)


def default_classes(num_classes: int) -> list[str]:
    if num_classes == 400 and LABELS_K400.is_file():
        return LABELS_K400.read_text().splitlines()
    return [f"class_{i}" for i in range(num_classes)]


def convert_checkpoint(src: str | Path, out: str | Path, layout: str = "auto", *,
                       classes: list[str] | None = None, **kw: Any) -> ConversionReport:
    """Convert ``src`` and write a ``csn-explorer/1`` checkpoint to ``out`` (atomically)."""
    sd = load_source(src)
    spec, ours, report = convert_state_dict(sd, layout, **{k: v for k, v in kw.items() if k != "rate"})
    classes = classes or default_classes(spec.num_classes)
    if len(classes) != spec.num_classes:
        raise ConvertError(f"{len(classes)} class names for {spec.num_classes} outputs")
    ckpt = {"format": "csn-explorer/1", "model": ours, "spec": spec.to_dict(), "classes": list(classes),
            "epoch": 0, "optimizer": {}, "scheduler": {}, "rng": {}, "metrics": {},
            "config": {"imported_from": str(src), "layout": report.layout, "frames": spec.frames,
                       "size": spec.height, "rate": kw.get("rate", 2),
                       "mean": list(report.options["mean"]), "std": list(report.options["std"]),
                       "notes": report.notes}}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(out)
    return report


def _tstride(text: str) -> bool | tuple[bool, ...]:
    flags = [v.strip().lower() for v in text.split(",")]
    if len(flags) not in (1, 3) or any(v not in ("yes", "no") for v in flags):
        raise argparse.ArgumentTypeError(f"expected yes, no or three of them (yes,yes,no), got {text!r}")
    vals = tuple(v == "yes" for v in flags)
    return vals[0] if len(vals) == 1 else vals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend.convert", description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("--layout", default="auto", choices=("auto",) + LAYOUTS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--labels", help="text file, one class name per line (default: Kinetics-400 for 400 classes)")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--bn-eps", type=float)
    ap.add_argument("--pool1", choices=("yes", "no"))
    ap.add_argument("--temporal-stride", type=_tstride, metavar="yes|no|F,F,F",
                    help="temporal stride at conv3_1..conv5_1: one yes/no, or three (e.g. yes,yes,no)")
    ap.add_argument("--ip-relu", choices=("yes", "no"))
    ap.add_argument("--strict", action="store_true", help="fail on unused source keys")
    a = ap.parse_args(argv)
    yn = lambda v: None if v is None else v == "yes"  # noqa: E731
    classes = Path(a.labels).read_text().splitlines() if a.labels else None
    try:
        rep = convert_checkpoint(a.src, a.out, a.layout, classes=classes, frames=a.frames, size=a.size,
                                 strict=a.strict, bn_eps=a.bn_eps, pool1=yn(a.pool1),
                                 temporal_stride=a.temporal_stride, ip_relu=yn(a.ip_relu))
    except (ConvertError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(rep.summary())
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
