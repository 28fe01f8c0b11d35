"""The Builder's form model, without Streamlit: which spec fields the form shows and how, the
conversion spec <-> form values each way, and the spec errors in the form's words.

The form is generated from :data:`CLIP_FORM` and :data:`STAGE_FORM`; a form value's key is the
spec field (stage fields ``s{i}_`` + field, the conv head's pool ``head_pool_t/h/w``). Spec
fields not listed keep the loaded spec's value.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from backend.csn import BLOCK_TYPES, ArchSpec, SpecError, explore
from backend.csn.presets import DEFAULT_GROUPS, DEFAULT_PW_GROUPS
from backend.csn.spec import HEADS, INPUT_CENTRES, canonical_block

G_BLOCKS = ("simple-G", "bottleneck-G")
BLOCK_LABELS = {"bottleneck-D": "bottleneck-D (ir-CSN)", "ip": "ip (ip-CSN)"}
# a stage's temporal stride: form value <-> spec value (None follows the clip's T-stride)
TSTRIDE = {"auto": None, "2": True, "1": False}
TSTRIDE_LABELS = {"auto": "as T-stride", "2": "2 (halve T)", "1": "1 (keep T)"}
HEAD_POOL = ("t", "h", "w")

#: spec field -> (label, widget kind, widget arguments)
CLIP_FORM: dict[str, tuple[str, str, dict]] = {
    "name": ("Name", "text", {}),
    "frames": ("Frames T", "int", dict(min_value=1, max_value=512)),
    "height": ("Height H", "int", dict(min_value=8, max_value=1024, step=8)),
    "width": ("Width W", "int", dict(min_value=8, max_value=1024, step=8)),
    "num_classes": ("Classes", "int", dict(min_value=1, max_value=100000)),
    "head": ("Head", "select", dict(options=HEADS, help="fc: global average pool + Linear; conv: "
                                    "[avg-pool] + 1x1x1 conv classifier")),
    "pool1": ("pool1", "toggle", dict(help="max-pool 1x3x3 stride 1x2x2 after conv1")),
    "pool2": ("pool2", "toggle", dict(help="max-pool 2x1x1 stride 2x1x1 after conv2_x "
                                      "(mmaction2's with_pool2)")),
    "temporal_stride": ("T-stride", "toggle", dict(
        help="Temporal striding: 2x2x2 strides at conv3_1, conv4_1, conv5_1 (off: 1x2x2)")),
    "input_centre": ("Input centring", "select", dict(
        options=INPUT_CENTRES, help="temporal: the net sees each clip minus its per-pixel mean "
                                    "over time (only what moves is left); not counted")),
}
STAGE_FORM: dict[str, tuple[str, str, dict]] = {
    "block": ("Block type", "select", dict(options=BLOCK_TYPES,
                                           format_func=lambda x: BLOCK_LABELS.get(x, x))),
    "blocks": ("Blocks", "int", dict(min_value=1, max_value=64)),
    "width": ("Width (output channels)", "int", dict(min_value=1, max_value=8192)),
    "inner": ("Inner width (3x3x3 channels)", "int", dict(min_value=1, max_value=8192)),
    "groups": ("Groups (3x3x3)", "int", dict(min_value=1, max_value=8192)),
    "pw_groups": ("Pointwise groups (1x1x1)", "int", dict(min_value=1, max_value=8192)),
    "temporal_stride": ("Temporal stride", "select", dict(
        options=list(TSTRIDE), format_func=TSTRIDE_LABELS.get,
        help="Stride in time of the stage's first block")),
}


def stage_field_shown(i: int, field: str, block: str) -> bool:
    """Whether a stage field is on the form for this block type (hidden ones take the value
    that leaves the design unchanged: inner = width, groups = 1, ...)."""
    return {"inner": not block.startswith("simple"), "groups": block in G_BLOCKS,
            "pw_groups": block == "bottleneck-DG", "temporal_stride": i > 0}.get(field, True)


# --- spec <-> form: one conversion each way ---------------------------------------------------
def spec_to_form(spec: ArchSpec) -> dict[str, Any]:
    """The form's values for ``spec``."""
    vals: dict[str, Any] = {f: getattr(spec, f) for f in CLIP_FORM}
    vals.update({f"head_pool_{a}": v for a, v in zip(HEAD_POOL, spec.head_pool)})
    form_tstride = {v: k for k, v in TSTRIDE.items()}
    for i, stage in enumerate(spec.stages):
        vals.update({f"s{i}_{f}": getattr(stage, f) for f in STAGE_FORM})
        vals[f"s{i}_block"] = canonical_block(stage.block)
        vals[f"s{i}_temporal_stride"] = form_tstride[stage.temporal_stride]
    return vals


def form_to_spec(vals: dict[str, Any], base: ArchSpec) -> ArchSpec:
    """The ArchSpec the form values describe, on top of ``base`` (hidden fields neutral)."""
    stages = []
    for i, stage in enumerate(base.stages):
        block = vals[f"s{i}_block"]
        got = {f: vals[f"s{i}_{f}"] for f in STAGE_FORM if stage_field_shown(i, f, block)}
        got.setdefault("inner", vals[f"s{i}_width"])
        got["temporal_stride"] = TSTRIDE[got.get("temporal_stride", "auto")]
        stages.append(replace(stage, **{"groups": 1, "pw_groups": 1, **got}))
    clip = {f: vals[f] for f in CLIP_FORM}
    clip["name"] = clip["name"] or "custom"
    head_pool = (tuple(int(vals[f"head_pool_{a}"]) for a in HEAD_POOL) if clip["head"] == "conv"
                 else (0, 0, 0))
    return replace(base, stages=stages, head_pool=head_pool, **clip)


def canonical(spec: ArchSpec) -> ArchSpec:
    """``spec`` as the form holds it: block aliases resolved, hidden fields neutral."""
    return form_to_spec(spec_to_form(spec), spec)


def reshown_defaults(vals: dict[str, Any], base: ArchSpec) -> dict[str, int]:
    """Form values for fields that reappear (groups for -G, pw_groups for -DG) while they hold
    the neutral 1 they had hidden: ``base``'s value when it has one, else the preset default."""
    out: dict[str, int] = {}
    for i, stage in enumerate(base.stages):
        block = vals[f"s{i}_block"]
        if block in G_BLOCKS and vals.get(f"s{i}_groups", 1) == 1:
            out[f"s{i}_groups"] = stage.groups if stage.groups > 1 else DEFAULT_GROUPS
        if block == "bottleneck-DG" and vals.get(f"s{i}_pw_groups", 1) == 1:
            out[f"s{i}_pw_groups"] = stage.pw_groups if stage.pw_groups > 1 else DEFAULT_PW_GROUPS
    return out


def edited_name(spec: ArchSpec, base: ArchSpec) -> ArchSpec:
    """An edited preset or loaded design named ``<base>-edited`` unless the user renamed it."""
    if (spec.name == base.name and not base.name.endswith("-edited")
            and replace(spec, name=base.name) != base):
        return replace(spec, name=f"{base.name}-edited")
    return spec


# --- errors in the form's words ---------------------------------------------------------------
UI_WORDS = {"temporal_stride=false": "T-stride off", "temporal_stride": "temporal stride",
            "pw_groups": "pointwise groups", "head_pool": "head pool", "num_classes": "classes",
            "stem_width": "stem width", "_x.inner": "_x inner width", "true, false or null":
            "2, 1 or 'as T-stride'"}


def ui_message(err: SpecError, at: tuple[int | None, str], spec: ArchSpec) -> str:
    """The spec error in the form's words, with the values that would be valid."""
    msg = str(err)
    for api_word, ui_word in UI_WORDS.items():
        msg = msg.replace(api_word, ui_word)
    ok = explore.valid_values(spec, *at)
    if at[1] in ("groups", "pw_groups", "width", "inner") and ok:
        what = STAGE_FORM[at[1]][0]
        msg += f". Valid {what.lower()} here: {', '.join(map(str, ok))}"
    elif at[1] == "clip" and ok:
        msg += ". Valid: " + " or ".join(f"at least {v} {'frames' if f == 'frames' else 'pixels high'}"
                                         for f, v in ok)
        if explore.valid_values(spec, None, "temporal_stride"):
            msg += ", or turn T-stride off"
    return msg
