"""mmaction2: ``Recognizer3D`` + ``ResNet3dCSN`` + ``I3DHead``
(``mmaction/models/backbones/resnet3d_csn.py``).

Keys ``backbone.conv1.conv``, ``backbone.layer1.0.conv2.0.conv`` (ip: ``conv2.0`` 1x1x1,
``conv2.1`` depthwise), ``backbone.layer1.0.downsample.conv``, ``cls_head.fc_cls``. A published
checkpoint carries its config text in ``meta['cfg']``; it is read with a literal reader,
nothing in it is executed.
"""
from __future__ import annotations

import ast
import re
from typing import Any

from .records import ConvertError, Fact, Key, SKIP, Source, SourceFormat, unit_param

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def parse_mmaction2(k: str) -> Key | None:
    """mmaction2 Recognizer3D(ResNet3dCSN, I3DHead) (mmaction/models/backbones/resnet3d_csn.py)."""
    if k.startswith("data_preprocessor."):
        return SKIP
    if k in ("cls_head.fc_cls.weight", "cls_head.fc_cls.bias"):
        return Key("fc", param="fc_" + k.rsplit(".", 1)[1])
    k = k[len("backbone."):] if k.startswith("backbone.") else k
    if m := re.match(r"conv1\.(conv|bn)\.(\w+)$", k):
        return unit_param("stem", (), "stem", m[1] == "conv", m[2])
    m = re.match(r"layer([1-4])\.(\d+)\.(conv1|conv2\.[01]|conv3|downsample)\.(conv|bn)\.(\w+)$", k)
    if not m:
        return None
    unit = "short" if m[3] == "downsample" else {"conv1": "a", "conv2.0": "b0", "conv2.1": "b1",
                                                   "conv3": "c"}[m[3]]
    return unit_param("block", (int(m[1]) - 1, int(m[2])), unit, m[4] == "conv", m[5])


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


def detect(keys: set[str]) -> bool:
    return any(k.startswith("backbone.") for k in keys) or "conv1.conv.weight" in keys


FORMAT = SourceFormat(
    name="mmaction2", detect=detect, parse_key=parse_mmaction2,
    code_facts={
        "bn_eps": Fact(1e-3, "mmaction2 ResNet3dCSN: norm_cfg eps=1e-3"),
        "temporal_stride": Fact((True, True, True), "mmaction2 ResNet3dCSN: temporal_strides=(1, 2, 2, 2)"),
        "ip_relu": Fact(False, "mmaction2 CSNBottleneck3d: ip 1x1x1 ConvModule act_cfg=None"),
        "stem_stride_t": Fact(1, "mmaction2 ResNet3dCSN: conv1_stride_t=1"),
        "pool1": Fact(True, "mmaction2 ResNet3d: with_pool1=True"),
    },  # ResNet3dCSN defaults
    required={"pool2": "--pool2 yes|no (mmaction2 ResNet3d with_pool2: default True, CSN configs False)"},
    default_norm=(IMAGENET_MEAN, IMAGENET_STD, "mmaction2 configs/_base_/models/ircsn_r152.py; its "
                  "sports1m / from-scratch configs use VMZ's values instead"),
    file_facts=mmaction2_facts)
