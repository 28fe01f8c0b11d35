"""The bounds every spec obeys, and bounded reading of spec JSON from outside.

``check_bounds(spec)`` runs first in ``plan()`` (so in validation, counting and building):
strict types and the limits below, all checked before any layer is walked, so validating or
counting any input costs O(layers) with layers bounded. ``load_json`` and ``check_tree`` bound
what an entry point (CLI, Builder upload, queue, checkpoint) reads before a spec is made of it.
Errors are :class:`SpecError` naming the field, and quote at most ~60 characters of the input.
"""
from __future__ import annotations

import json
import math
from typing import Any

from .vocab import HEADS, INPUT_CENTRES, INPUT_ORDERS, SpecError

#: What no real network needs (ResNet-200's conv4 has 36 blocks, the widest stage 2048
#: channels, Kinetics clips 8-64 frames): beyond these a spec is refused.
LIMITS: dict[str, int] = {
    "blocks": 128,          # residual blocks in one stage
    "layers": 1000,         # conv layers of the whole network
    "width": 8192,          # channels of any conv: stem_width, stage width and inner
    "groups": 8192,         # groups / pw_groups
    "frames": 1024,         # clip length T (and head_pool's t)
    "side": 4096,           # clip height / width (and head_pool's h, w)
    "num_classes": 100_000,
    "in_channels": 64,
    "stem_kernel_t": 15,
    "stem_stride_t": 8,
    "name": 200,            # characters of the spec's name
}
MAX_JSON_BYTES = 1_000_000   # a full ir-CSN-152 spec is ~1.5 KB, its count --json ~60 KB
MAX_JSON_DEPTH = 16          # a spec nests 3 deep (spec > stages > stage)
MAX_JSON_NODES = 50_000      # values in one document
MAX_INT_DIGITS = 19          # int64
SHOW_CHARS = 60


def show(value: Any, n: int = SHOW_CHARS) -> str:
    """``repr(value)`` cut to ``n`` characters: errors never echo more of the input."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** MAX_INT_DIGITS:
        return f"an integer of about {value.bit_length() * 0.30103:.0f} digits"
    if isinstance(value, (str, bytes)) and len(value) > n:
        value = value[:n]                        # repr of a 50 MB string stays cheap
    if isinstance(value, (list, tuple, dict, set)):
        if len(value) > 8 or isinstance(value, (dict, set)):
            return f"a {type(value).__name__} of {len(value)} items"
        text = "[" + ", ".join(show(x, 20) for x in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def show_names(names: Any, n: int = 5) -> str:
    """Up to ``n`` of the given (untrusted) names, each shown briefly, and how many more."""
    names = sorted(str(k)[:SHOW_CHARS] for k in list(names)[:1000])
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(show(k, 40) for k in names[:n]) + more


def _int(where: str, v: Any, lo: int, hi: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool):
        raise SpecError(where, f"must be an integer, got {show(v)}")
    if not lo <= v <= hi:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(lo, f"an integer >= {lo}")
        raise SpecError(where, f"must be {what}, got {show(v)} (limit {hi:,})")


def _bool(where: str, v: Any, none_ok: bool = False) -> None:
    if not (isinstance(v, bool) or (none_ok and v is None)):
        raise SpecError(where, f"must be true or false{' or null' if none_ok else ''}, got {show(v)}")


def _str(where: str, v: Any, choices: tuple[str, ...] | None = None, n: int = 40) -> None:
    if not isinstance(v, str) or len(v) > n:
        raise SpecError(where, f"must be a string of at most {n} characters, got {show(v)}")
    if choices is not None and v not in choices:
        raise SpecError(where, f"must be one of {', '.join(choices)}, got {show(v)}")


def finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(where: str, v: Any, n_max: int, positive: bool) -> None:
    what = "positive numbers (finite)" if positive else "numbers (finite)"
    if not isinstance(v, (tuple, list)) or not 1 <= len(v) <= n_max or not all(
            finite_number(x) and (not positive or x > 0) for x in v):
        raise SpecError(where, f"must be {what}, one per input channel or one for all (0-1 "
                        f"scale), got {show(v)}")


def check_bounds(spec: Any, stage_type: type) -> None:
    """Types and limits of every field, before any layer is walked; raises SpecError.
    ``stage_type``: the class every stage must be (StageSpec)."""
    L = LIMITS
    _str("name", spec.name, n=L["name"])
    for f, hi in (("frames", L["frames"]), ("height", L["side"]), ("width", L["side"]),
                  ("in_channels", L["in_channels"]), ("num_classes", L["num_classes"]),
                  ("stem_width", L["width"]), ("stem_kernel_t", L["stem_kernel_t"]),
                  ("stem_stride_t", L["stem_stride_t"])):
        _int(f, getattr(spec, f), 1, hi)
    for f in ("pool1", "pool2", "temporal_stride", "ip_relu"):
        _bool(f, getattr(spec, f))
    _str("head", spec.head, HEADS)
    _str("input_order", spec.input_order, INPUT_ORDERS)
    _str("input_centre", spec.input_centre, INPUT_CENTRES)
    if not finite_number(spec.dropout) or not 0.0 <= spec.dropout < 1.0:
        raise SpecError("dropout", f"must be a number in [0, 1), got {show(spec.dropout)}")
    hp = spec.head_pool
    if not isinstance(hp, (tuple, list)) or len(hp) != 3:
        raise SpecError("head_pool", f"must be three non-negative integers (t, h, w), got {show(hp)}")
    for v, hi in zip(hp, (L["frames"], L["side"], L["side"])):
        _int("head_pool", v, 0, hi)
    _numbers("input_mean", spec.input_mean, L["in_channels"], positive=False)
    _numbers("input_std", spec.input_std, L["in_channels"], positive=True)
    _check_stages(spec.stages, stage_type)


def _check_stages(stages: Any, stage_type: type) -> None:
    if not isinstance(stages, (list, tuple)) or len(stages) != 4:
        raise SpecError("stages", f"must be 4 stages (conv2_x..conv5_x), got {show(stages)}")
    layers = 1                                               # conv1
    for i, st in enumerate(stages):
        where = f"conv{i + 2}_x"
        if not isinstance(st, stage_type):
            raise SpecError(where, f"must be a stage object, got {show(st)}")
        _int(f"{where}.blocks", st.blocks, 1, LIMITS["blocks"])
        for f in ("width", "inner"):
            _int(f"{where}.{f}", getattr(st, f), 1, LIMITS["width"])
        for f in ("groups", "pw_groups"):
            _int(f"{where}.{f}", getattr(st, f), 1, LIMITS["groups"])
        _str(f"{where}.block", st.block)          # which names: canonical_block says
        _bool(f"{where}.temporal_stride", st.temporal_stride, none_ok=True)
        per_block = 4 if st.block in ("ip", "ip-csn") else 3    # + shortcut / extra 1x1x1
        layers += st.blocks * per_block + 1
    if layers > LIMITS["layers"]:
        raise SpecError("stages", f"about {layers} conv layers; at most {LIMITS['layers']} "
                        f"(blocks per stage at most {LIMITS['blocks']})")


# --- bounded JSON ---------------------------------------------------------------------------

def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise SpecError("", f"an integer of {len(text)} digits; at most {MAX_INT_DIGITS}")
    return int(text)


def _parse_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise SpecError("", f"number {show(text, 30)} is out of range (not finite)")
    return v


def _refuse_constant(name: str) -> Any:
    raise SpecError("", f"{name} is not a number a spec may hold (finite numbers only)")


def load_json(text: str | bytes, what: str = "spec") -> Any:
    """Parse untrusted JSON: at most MAX_JSON_BYTES, MAX_JSON_DEPTH deep, int64 integers,
    finite floats (no NaN/Infinity). Raises SpecError naming ``what``."""
    if len(text) > MAX_JSON_BYTES:
        raise SpecError("", f"{what}: more than {MAX_JSON_BYTES:,} bytes of JSON")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError("", f"{what}: not UTF-8 text") from None
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=_refuse_constant)
    except SpecError as e:
        raise SpecError("", f"{what}: {e.rule}") from None
    except RecursionError:
        raise SpecError("", f"{what}: JSON nested too deep (at most {MAX_JSON_DEPTH} levels)") from None
    except ValueError as e:                          # JSONDecodeError: position, not contents
        raise SpecError("", f"{what}: not valid JSON ({str(e).splitlines()[0][:80]})") from None
    check_tree(data, what)
    return data


def check_tree(data: Any, what: str = "spec") -> Any:
    """Refuse a parsed (or in-memory) document that is too deep, too big, or holds NaN,
    infinities or integers beyond int64; stops at the first excess (bounded work)."""
    todo, nodes = [(data, 1)], 0
    while todo:
        v, depth = todo.pop()
        nodes += 1
        if nodes > MAX_JSON_NODES:
            raise SpecError("", f"{what}: more than {MAX_JSON_NODES:,} values")
        if depth > MAX_JSON_DEPTH:
            raise SpecError("", f"{what}: nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(v, dict):
            if len(v) > MAX_JSON_NODES:
                raise SpecError("", f"{what}: more than {MAX_JSON_NODES:,} values")
            todo.extend((x, depth + 1) for x in v.values())
            todo.extend((k, depth + 1) for k in v)
        elif isinstance(v, (list, tuple)):
            if len(v) > MAX_JSON_NODES:
                raise SpecError("", f"{what}: more than {MAX_JSON_NODES:,} values")
            todo.extend((x, depth + 1) for x in v)
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, int):
            if abs(v) >= 2 ** 63:
                raise SpecError("", f"{what}: {show(v)}; integers must fit in 64 bits")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise SpecError("", f"{what}: {v!r} is not a finite number")
        elif isinstance(v, str):
            if len(v) > MAX_JSON_BYTES:
                raise SpecError("", f"{what}: a string of {len(v):,} characters")
        elif not hasattr(v, "__dataclass_fields__"):
            raise SpecError("", f"{what}: holds a {type(v).__name__}, not JSON data")
    return data
