"""A study's results in the paper's layout: Table 2 (costs, video@1 mean ± std over seeds),
Figure 5 (train/val error over iterations), Figure 6 (video@1 vs FLOPs per family) and
Figure 7 (video@1 vs channel interactions, log x); CSV / Markdown / PNG / SVG.

Input: a study document ``{"study": Study.to_dict(), "results": [{key, label, seed,
status, video_top1, history: {train_error, val_error}}]}`` (``backend.study`` writes it;
the app builds the same from the run store). Static files use matplotlib (Agg).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Callable

from backend.csn.paper import TABLE2
from backend.training.stats import mean_ci, paired_difference, sample_std, wilson

PAPER_NOTE = ("paper = the paper's Kinetics numbers at 8x224x224 and full width; not comparable "
              "in absolute terms")


def _paper_row(model: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in TABLE2:
        if r.model == model:
            out[r.metric] = r.printed
            out["video_top1"] = f"{r.accuracy}"
    return out


def _n_correct(r: dict[str, Any]) -> tuple[float, int] | None:
    """(correct, held-out videos) of a run's final validation, when its record has the count."""
    n = r.get("val_videos")
    return (round(r["video_top1"] * n), int(n)) if n else None


def table_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per planned model (seeds pooled): costs, video@1 mean with its 95 % Student t
    interval over seeds (None with one seed), the sample std, the mean Wilson half-width of
    its runs on their held-out sets, and the paper's values."""
    results = [r for r in doc["results"] if r.get("status") == "succeeded"
               and r.get("video_top1") is not None]
    rows: dict[str, dict[str, Any]] = {}
    for run in doc["study"]["runs"]:
        row = rows.setdefault(run["label"], {
            "model": run["label"], "family": run["family"], "order": run["order"],
            "MAdds (G)": run["costs"]["flops"] / 1e9, "params (M)": run["costs"]["params"] / 1e6,
            "interactions (G)": run["costs"]["interactions"] / 1e9, "by_seed": {}, "binom": [],
            **{f"paper {k}": v for k, v in _paper_row(run.get("paper")).items()}})
        for r in results:
            if r["key"] == _key(run):
                row["by_seed"][run["seed"]] = r["video_top1"]
                kn = _n_correct(r)
                row["binom"].append(wilson(*kn) if kn else None)
    return [_row_stats(row) for row in rows.values()]


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


def _row_stats(row: dict[str, Any]) -> dict[str, Any]:
    accs, binom = list(row["by_seed"].values()), row.pop("binom")
    ci = mean_ci(accs)
    halves = [b.half_width for b in binom if b is not None]
    binom_half = sum(halves) / len(halves) if halves and len(halves) == len(binom) else None
    one = binom[0] if len(binom) == 1 and binom[0] is not None else None
    return {**row, "video@1 (%)": _pct(ci.estimate if ci else None),
            "CI low (%)": _pct(ci.low if ci else None),
            "CI high (%)": _pct(ci.high if ci else None),
            "± 95% CI (%)": _pct(ci.half_width if ci else None),
            "std (%)": _pct(sample_std(accs)), "seeds": len(accs),
            "held-out n": ",".join(sorted({str(b.n) for b in binom if b is not None})) or None,
            "binomial ± (%)": _pct(binom_half),
            "binom low (%)": _pct(one.low if one else None),
            "binom high (%)": _pct(one.high if one else None)}


def run_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each finished run: video@1 with its Wilson 95 % interval on its held-out set."""
    out = []
    for r in doc["results"]:
        if r.get("status") != "succeeded" or r.get("video_top1") is None:
            continue
        kn = _n_correct(r)
        w = wilson(*kn) if kn else None
        out.append({"run": r["key"], "model": r["label"], "seed": r["seed"],
                    "video@1 (%)": 100 * r["video_top1"], "held-out n": kn[1] if kn else None,
                    "Wilson low (%)": _pct(w.low if w else None),
                    "Wilson high (%)": _pct(w.high if w else None)})
    return out


def _pairs(rows: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
    """Every pair when each family has one row (Table 2); else each row against its family's
    first (the ungrouped block of Figures 6/7)."""
    fams: dict[str, list[dict]] = {}
    for r in rows:
        fams.setdefault(r["family"], []).append(r)
    if all(len(v) == 1 for v in fams.values()):
        return [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]]
    return [(v[0], r) for v in fams.values() for r in v[1:]]


def paired_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired differences A - B over the seeds both rows finished (same data order and init
    seed), with a 95 % paired t interval and a verdict: "within noise" when it includes 0."""
    out = []
    for a, b in _pairs(rows):
        d = paired_difference(a["by_seed"], b["by_seed"])
        if d is None or d.low is None:
            verdict = "— (needs 2 shared seeds)"
        elif d.includes_zero:
            verdict = "within noise"
        else:
            verdict = f"{a['model'] if d.estimate > 0 else b['model']} better"
        out.append({"A": a["model"], "B": b["model"], "shared seeds": d.n if d else 0,
                    "A - B (pts)": _pct(d.estimate if d else None),
                    "low (pts)": _pct(d.low if d else None),
                    "high (pts)": _pct(d.high if d else None), "verdict": verdict})
    return out


def _key(run: dict[str, Any]) -> str:
    return f"{run['label']} s{run['seed']}".replace(" ", "_")


COLUMNS = ("model", "MAdds (G)", "params (M)", "interactions (G)", "video@1 (%)", "± 95% CI (%)",
           "CI low (%)", "CI high (%)", "std (%)", "seeds", "held-out n", "binomial ± (%)",
           "paper flops", "paper params", "paper interactions", "paper video_top1")
RUN_COLUMNS = ("run", "model", "seed", "video@1 (%)", "held-out n", "Wilson low (%)",
               "Wilson high (%)")
PAIR_COLUMNS = ("A", "B", "shared seeds", "A - B (pts)", "low (pts)", "high (pts)", "verdict")
STATS_NOTE = ("video@1: mean over seeds ± the 95 % Student t interval (t(0.975, n-1) · s/√n; "
              "— with one seed); seed std: s, the sample standard deviation over seeds (n-1); "
              "binomial ±: mean half-width of the runs' 95 % Wilson intervals "
              "on their held-out videos; paired A - B: mean over shared seeds ± the paired t "
              "interval, \"within noise\" when it includes 0")


def _cell(v: Any, column: str = "") -> str:
    """A value as text: percentages and points with 2 decimals, other small numbers with 4
    significant digits."""
    if v is None:
        return ""
    if isinstance(v, float):
        if column.endswith(("(%)", "(pts)")) or abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.4g}"
    return str(v)


def display_rows(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows as strings ("—" for what cannot be said): one type per column for a table widget."""
    return [{c: (_cell(r.get(c), c) or "—") for c in columns} for r in rows]


def table_csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c), c) for c in columns])
    return buf.getvalue()


def _md_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(r.values()) + " |" for r in display_rows(rows, columns)]
    return lines


def table_markdown(rows: list[dict[str, Any]], doc: dict[str, Any] | None = None) -> str:
    """Table 2 (mean ± 95 % CI), then with ``doc`` the runs' Wilson intervals and the paired
    differences."""
    def acc(r):
        if r["video@1 (%)"] is None:
            return "—"
        if r["± 95% CI (%)"] is None:
            return f"{r['video@1 (%)']:.1f} (± —, 1 seed)"
        return f"{r['video@1 (%)']:.1f} ± {r['± 95% CI (%)']:.1f}"
    has_paper = any("paper flops" in r for r in rows)
    head = ("| model | MAdds (G) | params (M) | interactions (G) | video@1 (%) | seed std (pts) "
            "| seeds | binomial ± (%) |")
    sep = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    if has_paper:
        head += " paper: GFLOPs / M params / G inter. / video@1 (Kinetics) |"
        sep += " --- |"
    lines = [head, sep]
    for r in rows:
        binom = "—" if r["binomial ± (%)"] is None else f"{r['binomial ± (%)']:.1f}"
        std = "—" if r["std (%)"] is None else f"{r['std (%)']:.1f}"
        line = (f"| {r['model']} | {r['MAdds (G)']:.4f} | {r['params (M)']:.3f} | "
                f"{r['interactions (G)']:.5f} | {acc(r)} | {std} | {r['seeds']} | {binom} |")
        if has_paper:
            p = " / ".join(r.get(f"paper {k}", "—") for k in ("flops", "params", "interactions",
                                                               "video_top1"))
            line += f" {p} |"
        lines.append(line)
    if doc is not None:
        lines += ["", "Runs (Wilson 95 % on the held-out set):", ""]
        lines += _md_table(run_rows(doc), RUN_COLUMNS)
        lines += ["", "Paired differences (95 % paired t over shared seeds):", ""]
        lines += _md_table(paired_rows(rows), PAIR_COLUMNS)
    lines.append(f"\n_{STATS_NOTE}._")
    if has_paper:
        lines.append(f"\n_{PAPER_NOTE}._")
    return "\n".join(lines) + "\n"


# --- figures ---------------------------------------------------------------------------------------
def _legend(ax) -> None:
    """A legend, or a note that there is nothing to plot yet."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center",
                transform=ax.transAxes, color="grey")


BARS_NOTE = "bars: 95% t interval over seeds; one seed: its run's Wilson 95% on the held-out set"


def error_bars(rows: list[dict[str, Any]]) -> list[list[float]]:
    """[below, above] distances per row: the t interval over seeds, or with one seed the run's
    Wilson interval; 0 where neither is known."""
    below, above = [], []
    for r in rows:
        mean = r["video@1 (%)"] or 0.0
        low = r["CI low (%)"] if r["CI low (%)"] is not None else r.get("binom low (%)")
        high = r["CI high (%)"] if r["CI high (%)"] is not None else r.get("binom high (%)")
        below.append(mean - low if low is not None and r["video@1 (%)"] is not None else 0.0)
        above.append(high - mean if high is not None and r["video@1 (%)"] is not None else 0.0)
    return [below, above]


def _bars_note(fig) -> None:
    fig.text(0.01, 0.005, BARS_NOTE, fontsize=6, color="grey", ha="left", va="bottom")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def figure5(doc: dict[str, Any], keys: list[str] | None = None):
    """Train (clip) and val (video) error over iterations for two runs (default: the first
    two models with a history, at the first one's seed, as the paper compares two models)."""
    plt = _plt()
    res = [r for r in doc["results"] if r.get("history", {}).get("train_error")]
    if keys:
        res = [r for r in res if r["key"] in keys] or res
    elif res:
        same_seed = [r for r in res if r["seed"] == res[0]["seed"]]
        res = list({r["label"]: r for r in reversed(same_seed)}.values())[::-1]
    fig, ax = plt.subplots(figsize=(6, 4))
    for r, color in zip(res[:2], ("tab:blue", "tab:red")):
        for kind, style in (("train_error", "--"), ("val_error", "-")):
            pts = r["history"].get(kind) or []
            if pts:
                ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, color=color,
                        marker="o", ms=3,
                        label=f"{r['label']} s{r['seed']} {kind.split('_')[0]}")
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.set_title("Figure 5: train (clip) vs val (video) error")
    _legend(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _accuracy_vs(rows: list[dict[str, Any]], x: str, title: str, log: bool):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    markers = "sDo^v<>p"
    for i, fam in enumerate(dict.fromkeys(r["family"] for r in rows)):
        pts = sorted((r for r in rows if r["family"] == fam and r["video@1 (%)"] is not None),
                     key=lambda r: r["order"])
        if not pts:
            continue
        ax.errorbar([r[x] for r in pts], [r["video@1 (%)"] for r in pts], yerr=error_bars(pts),
                    marker=markers[i % len(markers)], capsize=3, label=fam)
        for r in pts:
            ax.annotate(r["model"], (r[x], r["video@1 (%)"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 4))
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0), min(high, 100))   # an interval past 0 or 100 % runs off the axes
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(x + (" (log)" if log else ""))
    ax.set_ylabel("held-out video@1 (%)")
    ax.set_title(title)
    _legend(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _bars_note(fig)
    return fig


def figure_table2(rows: list[dict[str, Any]]):
    """Table 2 as bars: held-out video@1 per model (± std over seeds), with the paper's
    Kinetics video@1 beside it where the study matches a paper row."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = range(len(rows))
    ours = [r["video@1 (%)"] or 0 for r in rows]
    ax.bar([x - 0.2 for x in xs], ours, 0.4, yerr=error_bars(rows), capsize=3,
           label="this study (held-out video@1)")
    paper = [float(r["paper video_top1"]) if r.get("paper video_top1") else 0 for r in rows]
    if any(paper):
        ax.bar([x + 0.2 for x in xs], paper, 0.4, hatch="//", alpha=0.5,
               label="paper, Kinetics (not comparable)")
    ax.set_xticks(list(xs), [r["model"] for r in rows], rotation=20, fontsize=8)
    ax.set_ylabel("video@1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Table 2: video@1 per model")
    _legend(ax)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    _bars_note(fig)
    return fig


def figure6(rows: list[dict[str, Any]]):
    return _accuracy_vs(rows, "MAdds (G)", "Figure 6: video@1 vs FLOPs", log=False)


def figure7(rows: list[dict[str, Any]]):
    return _accuracy_vs(rows, "interactions (G)", "Figure 7: video@1 vs channel interactions",
                        log=True)


def figure_bytes(fig, fmt: str) -> bytes:
    """A figure as PNG or SVG bytes (and closed)."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120)
    plt.close(fig)
    return buf.getvalue()


def figures(doc: dict[str, Any], rows: list[dict[str, Any]] | None = None,
            fig5_keys: list[str] | None = None) -> dict[str, Callable[[], Any]]:
    """``{name: () -> matplotlib Figure}``: Table 2 as bars, Figures 5, 6 and 7."""
    rows = rows if rows is not None else table_rows(doc)
    return {"table2": lambda: figure_table2(rows), "fig5": lambda: figure5(doc, fig5_keys), "fig6": lambda: figure6(rows),
            "fig7": lambda: figure7(rows)}


def write_report(doc: dict[str, Any], out: Path) -> list[Path]:
    """table.csv, table.md and table2/fig5/fig6/fig7 .png + .svg under ``out``; the paths."""
    rows = table_rows(doc)
    out = Path(out)
    files = [out / "table.csv", out / "table.md", out / "runs.csv", out / "paired.csv"]
    files[0].write_text(table_csv(rows))
    files[1].write_text(table_markdown(rows, doc))
    files[2].write_text(table_csv(run_rows(doc), RUN_COLUMNS))
    files[3].write_text(table_csv(paired_rows(rows), PAIR_COLUMNS))
    for name, make in figures(doc, rows).items():
        for fmt in ("png", "svg"):
            p = out / f"{name}.{fmt}"
            p.write_bytes(figure_bytes(make(), fmt))
            files.append(p)
    return files


def doc_from_runs(plan: dict[str, Any], runs: list[dict[str, Any]],
                  metrics: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """The study document from run-store rows (``{id, key, status}``) and their epoch metric
    points (``{split, step, epoch, name, value}``): final val video@1, per-epoch errors."""
    by_key = {r["key"]: r for r in plan["runs"] for r in [dict(r, key=_key(r))]}
    results = []
    for run in runs:
        planned = by_key.get(run["key"])
        if planned is None:
            continue
        pts = sorted(metrics.get(run["id"], []), key=lambda p: (p["epoch"], p["step"]))
        val = [p for p in pts if p["split"] == "val" and p["name"] == "video_top1"]
        counted = [p for p in pts if p["split"] == "val" and p["name"] == "videos"]
        results.append({
            "key": run["key"], "label": planned["label"], "seed": planned["seed"],
            "status": run["status"], "run_id": run["id"],
            "video_top1": val[-1]["value"] if val and run["status"] == "succeeded" else None,
            "val_videos": counted[-1]["value"] if counted else None,
            "history": {
                "train_error": [[p["step"], 1 - p["value"]] for p in pts
                                if p["split"] == "train" and p["name"] == "clip_top1"],
                "val_error": [[p["step"], 1 - p["value"]] for p in val]}})
    return {"study": plan, "results": results}
