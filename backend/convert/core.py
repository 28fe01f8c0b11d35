"""The mapping core: a source's tensors in units, the spec they and the resolved facts imply,
and our state dict filled from them, every tensor accounted for.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..training.checkpoint import FORMAT, save_atomic
from ..csn import ArchSpec, StageSpec, build_model
from ..csn.clipfit import clip_range
from ..csn.spec import SpecError
from .formats import FORMATS, MODELS, detect_layout, source_format
from .readers import load_source
from .records import SKIP, ConvertError, Fact, Source, Unit

OUR_BN_EPS = 1e-5
LABELS_K400 = Path(__file__).resolve().parents[1] / "assets" / "kinetics400_labels.txt"
NORM_HINT = "--mean R,G,B --std R,G,B (0-1 scale) and --input-order RGB|BGR"
FLAG_FACTS = ("pool1", "pool2", "temporal_stride", "head_pool", "bn_eps", "ip_relu", "stem_stride_t",
              "input_mean", "input_std", "input_order", "frames", "size", "rate")


# --- grouping the keys into the source network's units --------------------------------------

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
    fmt = source_format(layout)
    stem, fc, ignored, unmapped, seen = Unit(), {}, [], [], {}
    blocks: dict[tuple, dict[str, Unit]] = defaultdict(dict)
    for k, v in sd.items():
        if _ignored(k, ignore):
            ignored.append(k)
            continue
        key = fmt.parse_key(k)
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
    stages = fmt.group_stages(units) if fmt.group_stages else _stages(units, layout)
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


# --- resolving the facts --------------------------------------------------------------------

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
    fmt = source_format(layout)
    facts = dict(fmt.code_facts)
    if model:
        m = MODELS[model]
        for k in (k for k in FLAG_FACTS if k in m):
            where = m.get("norm_where", m["where"]) if k.startswith("input_") else m["where"]
            facts[k] = Fact(m[k], f"model {model}: {where}")
    if fmt.file_facts:
        facts.update(fmt.file_facts(src))
    facts.update({k: Fact(v, f"flag --{k.replace('_', '-')}") for k, v in flags.items() if v is not None})
    missing = [hint for k, hint in fmt.required.items() if k not in facts]
    if missing:
        models = list(fmt.models)
        raise ConvertError(f"{src.name or 'the checkpoint'} does not say {len(missing)} architecture "
                           f"fact(s) its weights cannot show: pass {'; '.join(missing)}"
                           + (f"; or name the model: --model {'|'.join(models)}" if models else ""))
    warnings = []
    for k, v in (("frames", 32), ("size", 224), ("rate", 2)):
        if k not in facts:
            facts[k] = Fact(v, f"default --{k} (the file does not say; the clip it is counted at)")
    if fmt.derived_facts:
        facts.update(fmt.derived_facts(facts))
    if "input_mean" not in facts or "input_std" not in facts:
        mean, std, why = fmt.default_norm
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
        to = FORMATS[layout].parse_key if layout in FORMATS else None
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
