"""Count a preset or spec file from the command line.

    python -m backend.count ir-csn-152 --frames 32 [--size 224] [--classes 400] [--head fc|conv] [--json]
    python -m backend.count my_spec.json --json
    python -m backend.count --list
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from backend.csn import UNITS, ArchSpec, SpecError, count, list_presets, preset


def load_spec(name_or_path: str) -> ArchSpec:
    """A preset name, or a path to a spec JSON file (``ArchSpec.to_json`` output)."""
    path = Path(name_or_path)
    if name_or_path.endswith(".json") or path.is_file():
        try:
            text = path.read_text()
        except OSError as e:
            raise SpecError("", f"cannot read spec file {name_or_path}: {e.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError("", f"{name_or_path} is not valid JSON: {e}") from None
        return ArchSpec.from_dict(data.get("spec", data) if isinstance(data, dict) else data)
    return preset(name_or_path)


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
        f"{s.name}: clip {s.frames}x{s.height}x{s.width}, {s.num_classes} classes, head {s.head}, "
        f"depth {s.depth}",
        f"params       {_fmt(t.params, 1e6)} M  (conv+fc weights; +{t.bn_params:,} BN, "
        f"+{t.bias_params:,} bias = {t.all_params:,} trainable)",
        f"FLOPs        {_fmt(t.flops, 1e9)} G multiply-adds (paper's FLOPs) = "
        f"{_fmt(t.torch_flops, 1e9)} G torch FLOPs",
        f"interactions {_fmt(t.interactions, 1e9, 4)} G channel pairs (eq. 3)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend.count", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", help="preset name or spec JSON file")
    ap.add_argument("--list", action="store_true", help="list preset names")
    ap.add_argument("--frames", type=int, help="clip length T")
    ap.add_argument("--size", type=int, help="crop size (H = W)")
    ap.add_argument("--classes", type=int, help="number of classes K")
    ap.add_argument("--head", choices=["fc", "conv"], help="classifier form")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(list_presets()))
        return 0
    if not args.spec:
        ap.error("give a preset name or a spec JSON file (or --list)")
    try:
        spec = load_spec(args.spec)
        changes = {}
        if args.frames is not None:
            changes["frames"] = args.frames
        if args.size is not None:
            changes["height"] = changes["width"] = args.size
        if args.classes is not None:
            changes["num_classes"] = args.classes
        if args.head is not None:
            changes["head"] = args.head
        report = count(replace(spec, **changes))
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        d = report.to_dict()
        d["unit"] = dict(UNITS)
        print(json.dumps(d))
    else:
        print(render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
