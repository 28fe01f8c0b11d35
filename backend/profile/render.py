"""Plain-text tables of a profile and of the ratio table (the CLI's output)."""
from __future__ import annotations

from .core import ProfileReport


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f}"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return lines


def _row(name: str, kind: str, x: dict, extra: tuple[str, ...]) -> tuple[str, ...]:
    return (name, kind, f"{x['flops'] / 1e6:.1f}", f"{x['fwd_ms']:.2f}", f"{x['bwd_ms']:.2f}",
            f"{100 * x['time_share']:.1f}", f"{100 * x['flop_share']:.1f}",
            _mb(x["activation_bytes"])) + extra


def render_profile(rep: ProfileReport, fits: dict | None = None) -> str:
    c = rep.config
    head = ("layer", "kind", "MMAC", "fwd ms", "bwd ms", "time %", "FLOP %", "act MiB",
            "FLOP/B", "GFLOP/s", "bound")
    rows = [head]
    for x in rep.rows:
        rows.append(_row(x["name"], x["kind"], x, (f"{x['intensity']:.1f}",
                                                 f"{x['attained_gflops']:.1f}", x["bound"])))
    t = rep.totals
    total = {"flops": t["flops"], "fwd_ms": sum(x["fwd_ms"] for x in rep.rows),
             "bwd_ms": sum(x["bwd_ms"] for x in rep.rows), "time_share": 1.0, "flop_share": 1.0,
             "activation_bytes": t["activation_bytes"]}
    rows.append(_row("total", "", total, ("", "", "")))
    lines = [f"{rep.spec_name}: batch {c['batch']}, {c['mode']}, {c['device']}, {c['dtype']}, "
             f"{'channels_last' if c['channels_last'] else 'contiguous'}, threads "
             f"{c['threads'] or 'default'}, median of {c['repeats']}"] + _table(rows)
    lines += ["", "per stage:"] + _table([head[:8]] + [_row(g["stage"], "", g, ()) for g in rep.stages])
    m, r = rep.memory, rep.roof
    lines += ["",
              f"step {t['step_ms']:.1f} ms measured; rows sum to {t['layers_ms']:.1f} ms, "
              f"loss/optimizer/other {t['other_ms']:.1f} ms (unattributed {100 * t['gap']:+.1f}%); "
              f"profiler overhead {100 * t['overhead']:+.1f}%",
              f"roof ({r['device']}): dense conv {r['peak_flops'] / 1e9:.1f} GFLOP/s, copy "
              f"{r['bandwidth'] / 1e9:.1f} GB/s, ridge {r['ridge']:.1f} FLOP/B",
              f"memory at batch {m['batch']} (float32): params {_mb(m['param_bytes'])} + grads "
              f"{_mb(m['grad_bytes'])} + {m['optimizer']} state {_mb(m['optimizer_bytes'])} + "
              f"kept activations {_mb(m['activation_bytes'])} + workspace "
              f"{_mb(m['workspace_bytes'])} MiB -> predicted peak {_mb(m['peak_bytes'])} MiB"]
    mem_time = sum(x["time_share"] for x in rep.rows if x["bound"] == "memory")
    lines.append(f"memory-bound rows take {100 * mem_time:.1f}% of the time, "
                 f"{100 * sum(x['flop_share'] for x in rep.rows if x['bound'] == 'memory'):.1f}% "
                 "of the FLOPs")
    dw = [x for x in rep.rows if x["kind"] == "depthwise"]
    if dw:
        lines.append(f"depthwise rows ({sum(x['bound'] == 'memory' for x in dw)}/{len(dw)} "
                     f"memory-bound): {100 * sum(x['time_share'] for x in dw):.1f}% of the time, "
                     f"{100 * sum(x['flop_share'] for x in dw):.1f}% of the FLOPs")
    if fits:
        lines.append(f"largest training batch fitting {fits['memory_bytes'] / 1e9:.1f} GB: "
                     f"{fits['max_batch']}")
    lines += [f"WARNING: {w}" for w in rep.warnings]
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def render_compare(res: dict) -> str:
    rows = [("stage", "", "MAC ratio", "train time ratio", "infer time ratio", "memory ratio")]
    for r in res["ratios"]:
        rows.append((r["stage"], "", _fmt(r["flops_ratio"]), _fmt(r["train_time_ratio"]),
                     _fmt(r["infer_time_ratio"]), _fmt(r["memory_ratio"])))
    return "\n".join([f"{res['baseline']} / {res['design'].spec_name} (> 1: the design is "
                      "cheaper; total memory = predicted training peak)"] + _table(rows))
