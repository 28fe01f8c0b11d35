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

PAPER_NOTE = ("paper = the paper's Kinetics numbers at 8x224x224 and full width; not comparable "
              "in absolute terms")


def _paper_row(model: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in TABLE2:
        if r.model == model:
            out[r.metric] = r.printed
            out["video_top1"] = f"{r.accuracy}"
    return out


def table_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per planned model (seeds pooled): costs, video@1 mean/std, paper values."""
    results = [r for r in doc["results"] if r.get("status") == "succeeded"
               and r.get("video_top1") is not None]
    rows: dict[str, dict[str, Any]] = {}
    for run in doc["study"]["runs"]:
        row = rows.setdefault(run["label"], {
            "model": run["label"], "family": run["family"], "order": run["order"],
            "MAdds (G)": run["costs"]["flops"] / 1e9, "params (M)": run["costs"]["params"] / 1e6,
            "interactions (G)": run["costs"]["interactions"] / 1e9, "accs": [],
            **{f"paper {k}": v for k, v in _paper_row(run.get("paper")).items()}})
        row["accs"] += [r["video_top1"] for r in results if r["key"] == _key(run)]
    out = []
    for row in rows.values():
        accs = row.pop("accs")
        mean = sum(accs) / len(accs) if accs else None
        std = (math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1))
               if len(accs) > 1 else (0.0 if accs else None))
        out.append({**row, "video@1 (%)": None if mean is None else 100 * mean,
                    "std (%)": None if std is None else 100 * std, "seeds": len(accs)})
    return out


def _key(run: dict[str, Any]) -> str:
    return f"{run['label']} s{run['seed']}".replace(" ", "_")


COLUMNS = ("model", "MAdds (G)", "params (M)", "interactions (G)", "video@1 (%)", "std (%)",
           "seeds", "paper flops", "paper params", "paper interactions", "paper video_top1")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def table_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in COLUMNS])
    return buf.getvalue()


def table_markdown(rows: list[dict[str, Any]]) -> str:
    def acc(r):
        if r["video@1 (%)"] is None:
            return "—"
        return f"{r['video@1 (%)']:.1f} ± {r['std (%)']:.1f}" if r["seeds"] > 1 else f"{r['video@1 (%)']:.1f}"
    has_paper = any("paper flops" in r for r in rows)
    head = "| model | MAdds (G) | params (M) | interactions (G) | video@1 (%) |"
    sep = "| --- | ---: | ---: | ---: | ---: |"
    if has_paper:
        head += " paper: GFLOPs / M params / G inter. / video@1 (Kinetics) |"
        sep += " --- |"
    lines = [head, sep]
    for r in rows:
        line = (f"| {r['model']} | {r['MAdds (G)']:.4f} | {r['params (M)']:.3f} | "
                f"{r['interactions (G)']:.5f} | {acc(r)} |")
        if has_paper:
            p = " / ".join(r.get(f"paper {k}", "—") for k in ("flops", "params", "interactions",
                                                               "video_top1"))
            line += f" {p} |"
        lines.append(line)
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


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def figure5(doc: dict[str, Any], keys: list[str] | None = None):
    """Train (clip) and val (video) error over iterations for two runs (default: the first
    two with a history)."""
    plt = _plt()
    res = [r for r in doc["results"] if r.get("history", {}).get("train_error")]
    if keys:
        res = [r for r in res if r["key"] in keys] or res
    fig, ax = plt.subplots(figsize=(6, 4))
    for r, color in zip(res[:2], ("tab:blue", "tab:red")):
        for kind, style in (("train_error", "--"), ("val_error", "-")):
            pts = r["history"].get(kind) or []
            if pts:
                ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, color=color,
                        marker="o", ms=3, label=f"{r['label']} {kind.split('_')[0]}")
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
        ax.errorbar([r[x] for r in pts], [r["video@1 (%)"] for r in pts],
                    yerr=[r["std (%)"] or 0 for r in pts], marker=markers[i % len(markers)],
                    capsize=3, label=fam)
        for r in pts:
            ax.annotate(r["model"], (r[x], r["video@1 (%)"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 4))
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(x + (" (log)" if log else ""))
    ax.set_ylabel("held-out video@1 (%)")
    ax.set_title(title)
    _legend(ax)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figure_table2(rows: list[dict[str, Any]]):
    """Table 2 as bars: held-out video@1 per model (± std over seeds), with the paper's
    Kinetics video@1 beside it where the study matches a paper row."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = range(len(rows))
    ours = [r["video@1 (%)"] or 0 for r in rows]
    ax.bar([x - 0.2 for x in xs], ours, 0.4, yerr=[r["std (%)"] or 0 for r in rows], capsize=3,
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
    fig.tight_layout()
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
    files = [out / "table.csv", out / "table.md"]
    files[0].write_text(table_csv(rows))
    files[1].write_text(table_markdown(rows))
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
        results.append({
            "key": run["key"], "label": planned["label"], "seed": planned["seed"],
            "status": run["status"], "run_id": run["id"],
            "video_top1": val[-1]["value"] if val and run["status"] == "succeeded" else None,
            "history": {
                "train_error": [[p["step"], 1 - p["value"]] for p in pts
                                if p["split"] == "train" and p["name"] == "clip_top1"],
                "val_error": [[p["step"], 1 - p["value"]] for p in val]}})
    return {"study": plan, "results": results}
