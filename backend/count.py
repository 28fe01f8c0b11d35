"""Count a preset or spec file from the command line.

    python -m backend.count ir-csn-152 --frames 32 [--size 224] [--classes 400] [--head fc|conv] [--json]
    python -m backend.count ir-csn-101 --frames 32 --size 256 --head conv --head-pool 4,7,7
    python -m backend.count resnet3d-26 --pool1 no --stage-groups 2 --stage 3.block=ir
    python -m backend.count my_spec.json --json
    python -m backend.count --table 2|4|5       # the paper's rows, counted value beside each
    python -m backend.count --list

Every ArchSpec field has a flag (``--stem-width 32``, ``--temporal-stride no``); every stage
field applies to all stages with ``--stage-FIELD`` (``--stage-block ip``) or to one with
``--stage I.FIELD=VALUE`` (I = 0 for conv2_x ... 3 for conv5_x).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any

from backend.csn import UNITS, ArchSpec, SpecError, count, list_presets, preset
from backend.csn.loading import read_spec_file
from backend.csn.spec import StageSpec, canonical_block

#: ArchSpec fields with their own (older) flag names, or set another way
_RENAMED = {"num_classes": "classes", "height": None, "width": None, "stages": None}


def load_spec(name_or_path: str) -> ArchSpec:
    """A preset name, or a path to a spec JSON file (``ArchSpec.to_json`` output); what the
    file left to the defaults is said on stderr."""
    path = Path(name_or_path)
    if name_or_path.endswith(".json") or path.is_file():
        loaded = read_spec_file(path, validate=False)   # flags may still change the clip
        if loaded.filled:
            print(f"note: {path.name[:80]}: {loaded.note()}", file=sys.stderr)
        return loaded.spec
    return preset(name_or_path)


def with_valid_values(e: SpecError, spec: ArchSpec | None) -> str:
    """The error, and the values of the field it names that would be valid (as the Builder
    lists them)."""
    from backend.csn.explore import error_field, valid_values
    if spec is None:
        return str(e)
    try:
        stage, field = error_field(e, spec)
        ok = valid_values(spec, stage, field)
    except (SpecError, ValueError, TypeError, IndexError):
        return str(e)
    if not ok:
        return str(e)
    if field == "clip":
        return f"{e}; valid: " + " or ".join(f"--{'frames' if f == 'frames' else 'size'} {v} or more"
                                             for f, v in ok)
    where = f"--stage {stage}.{field}=" if stage is not None else f"--{field.replace('_', '-')} "
    return f"{e}; valid: {where}{' | '.join(map(str, ok))}"


def _fmt(n: float, scale: float, digits: int = 3) -> str:
    return f"{n / scale:.{digits}f}"


def render_table(report) -> str:
    rows = [("layer", "kind", "C_in", "C_out", "G", "kernel", "stride", "out TxHxW",
             "params", "MFLOPs(MAC)", "interactions")]
    for l in report.layers:
        rows.append((l.name, l.kind, str(l.c_in), str(l.c_out), str(l.groups),
                     "x".join(map(str, l.kernel)), "x".join(map(str, l.stride)),
                     "x".join(map(str, l.out_size)), f"{l.params:,}", _fmt(l.flops, 1e6, 2),
                     f"{l.interactions:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    t = report.totals
    s = report.spec
    lines += [
        "",
        f"{s.name}: clip {s.frames}x{s.height}x{s.width}, {s.num_classes} classes, head {s.head}"
        + (f" (pool {'x'.join(map(str, s.head_pool))})" if any(s.head_pool) else "")
        + f", depth {s.depth}",
        f"params       {_fmt(t.params, 1e6)} M  (conv+fc weights; +{t.bn_params:,} BN, "
        f"+{t.bias_params:,} bias = {t.all_params:,} trainable)",
        f"FLOPs        {_fmt(t.flops, 1e9)} G multiply-adds (paper's FLOPs) = "
        f"{_fmt(t.torch_flops, 1e9)} G torch FLOPs",
        f"interactions {_fmt(t.interactions, 1e9, 4)} G channel pairs (eq. 3)",
    ]
    return "\n".join(lines)


def paper_table(table: str) -> str:
    """The paper's rows of Table 2, 4 or 5: printed value, counted value, whether they agree."""
    from backend.csn.paper import ALL_ROWS, table_spec
    rows = [r for r in ALL_ROWS if r.table == table]
    unit = {"flops": "GFLOPs", "params": "M params", "interactions": "G interactions"}
    out = [f"Table {table} (paper's spec: {_clip_text(table_spec(table, rows[0].model))})",
           f"{'model':<14}{'metric':<16}{'paper':>8}{'counted':>10}  match  video@1 (paper)"]
    for r in rows:
        value = getattr(count(table_spec(r.table, r.model)).totals, r.metric) / r.scale
        shown = f"{value:.{r.decimals}f}"
        out.append(f"{r.model:<14}{unit[r.metric]:<16}{r.printed:>8}{shown:>10}  "
                   f"{'yes' if shown == r.printed else 'NO':<5}  "
                   f"{'' if r.accuracy is None else r.accuracy}")
    return "\n".join(out)


def _clip_text(s: ArchSpec) -> str:
    pool = f", pool {'x'.join(map(str, s.head_pool))}" if any(s.head_pool) else ""
    return f"{s.frames}x{s.height}x{s.width}, {s.num_classes} classes, {s.head} head{pool}"


def _parse_value(text: str, default: Any, name: str = "") -> Any:
    """A flag's text as the type of the field's default."""
    if name == "block":
        return canonical_block(text.strip(), "block")
    if isinstance(default, bool) or default is None:
        low = text.strip().lower()
        if low in ("yes", "true", "1", "on"):
            return True
        if low in ("no", "false", "0", "off"):
            return False
        if default is None and low in ("none", "default", ""):
            return None
        raise ValueError(f"expected yes/no, got {text!r}")
    if isinstance(default, tuple):
        kind = type(default[0]) if default else int
        return tuple(kind(v) for v in text.replace("x", ",").split(","))
    return type(default)(text)


def _field_default(f) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def _add_field_flags(ap: argparse.ArgumentParser) -> None:
    for f in fields(ArchSpec):
        if f.name in _RENAMED or f.name in ("frames", "head"):
            continue
        ap.add_argument(f"--{f.name.replace('_', '-')}", dest=f"arch__{f.name}", metavar="V",
                        help=f"ArchSpec.{f.name} (default: the preset's)")
    for f in fields(StageSpec):
        ap.add_argument(f"--stage-{f.name.replace('_', '-')}", dest=f"stage__{f.name}", metavar="V",
                        help=f"StageSpec.{f.name} for every stage")
    ap.add_argument("--stage", action="append", default=[], metavar="I.FIELD=V",
                    help="one stage's field, e.g. 1.groups=8 (repeatable)")


def _apply_flags(spec: ArchSpec, args: argparse.Namespace) -> ArchSpec:
    """The spec with every given field flag applied; raises SpecError for a bad value."""
    arch = {f.name: f for f in fields(ArchSpec)}
    stage = {f.name: f for f in fields(StageSpec)}
    changes: dict[str, Any] = {}
    for key, text in vars(args).items():
        if text is None or not key.startswith(("arch__", "stage__")):
            continue
        kind, name = key.split("__", 1)
        f = arch[name] if kind == "arch" else stage[name]
        try:
            value = _parse_value(text, _field_default(f), name)
        except ValueError as e:
            raise SpecError("", f"--{'stage-' if kind == 'stage' else ''}"
                            f"{name.replace('_', '-')}: {e}") from None
        if kind == "arch":
            changes[name] = value
        else:
            spec = replace(spec, stages=[replace(s, **{name: value}) for s in spec.stages])
    for item in args.stage:
        where, _, text = item.partition("=")
        idx, _, name = where.partition(".")
        if not idx.isdigit() or name not in stage or not text:
            raise SpecError("", f"--stage {item!r}: expected I.FIELD=VALUE with FIELD one of "
                            f"{', '.join(stage)}")
        try:
            value = _parse_value(text, _field_default(stage[name]), name)
        except ValueError as e:
            raise SpecError("", f"--stage {item}: {e}") from None
        if int(idx) >= len(spec.stages):
            raise SpecError("", f"--stage {item}: stage index {idx} out of range")
        spec = spec.with_stage(int(idx), **{name: value})
    return replace(spec, **changes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend.count", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", help="preset name or spec JSON file")
    ap.add_argument("--list", action="store_true", help="list preset names")
    ap.add_argument("--table", choices=["2", "4", "5"], help="print the paper's rows of this "
                    "table with the counted value beside each")
    ap.add_argument("--frames", type=int, help="clip length T")
    ap.add_argument("--size", type=int, help="crop size (H = W)")
    ap.add_argument("--height", type=int, help="crop height")
    ap.add_argument("--width", type=int, help="crop width")
    ap.add_argument("--classes", type=int, help="number of classes K")
    ap.add_argument("--head", choices=["fc", "conv"], help="classifier form")
    _add_field_flags(ap)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(list_presets()))
        return 0
    if args.table:
        print(paper_table(args.table))
        return 0
    if not args.spec:
        ap.error("give a preset name or a spec JSON file (or --list / --table)")
    spec = None
    try:
        spec = load_spec(args.spec)
        changes = {k: v for k, v in (("frames", args.frames), ("num_classes", args.classes),
                                     ("head", args.head), ("height", args.size or args.height),
                                     ("width", args.size or args.width)) if v is not None}
        spec = _apply_flags(replace(spec, **changes), args)
        report = count(spec)
    except SpecError as e:
        print(f"error: {with_valid_values(e, spec)}", file=sys.stderr)
        return 2
    if args.json:
        d = report.to_dict()
        d["unit"] = dict(UNITS)
        print(json.dumps(d))
    else:
        print(render_table(report))
    return 0


if __name__ == "__main__":
    from backend.cli import run_cli
    sys.exit(run_cli(main))
