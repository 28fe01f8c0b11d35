"""Plotly figures for the pages (pure functions of counted or stored data)."""
from __future__ import annotations

from typing import Any, Iterable

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.chart_layout import label_positions, log_ticks

STAGE_COLORS = {"conv1": "#8c8c8c", "pool1": "#bbbbbb", "conv2": "#4c78a8", "conv3": "#f58518",
                "conv4": "#54a24b", "conv5": "#e45756", "head": "#b279a2"}
FAMILY_COLORS = {"resnet3d": "#4c78a8", "ir-csn": "#e45756", "ip-csn": "#54a24b"}
_METRICS = (("params", 1e6, "Parameters (M)"), ("flops", 1e9, "Multiply-adds (G)"),
            ("interactions", 1e9, "Interactions (G pairs)"))


def stage_bars(report, baseline, name: str, baseline_name: str) -> go.Figure:
    """Params / multiply-adds / interactions per stage, stacked, current vs baseline."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[m[2] for m in _METRICS])
    cur, ref = report.by_stage(), baseline.by_stage()
    for stage in [s for s in STAGE_COLORS if s in cur or s in ref]:
        for col, (attr, scale, _) in enumerate(_METRICS, start=1):
            y = [getattr(d[stage], attr) / scale if stage in d else 0 for d in (cur, ref)]
            fig.add_trace(go.Bar(x=[name, baseline_name], y=y, name=stage, legendgroup=stage,
                                 showlegend=col == 1, marker_color=STAGE_COLORS[stage],
                                 hovertemplate=f"{stage}: %{{y:.3g}}<extra></extra>"),
                          row=1, col=col)
    fig.update_layout(barmode="stack", height=380, margin=dict(t=40, b=10, l=10, r=10),
                      legend_title_text="stage")
    return fig


def _placed_labels(fig: go.Figure, width_px: float, height_px: float) -> None:
    """Give every text-labelled trace per-point text positions that keep all labels of the
    figure apart, and log axes ticks that show whole values."""
    traces = [t for t in fig.data if t.text is not None]
    xs = [x for t in traces for x in t.x]
    ys = [y for t in traces for y in t.y]
    pos = label_positions(xs, ys, [str(s) for t in traces for s in t.text],
                          width_px=width_px, height_px=height_px)
    for t in traces:
        t.textposition, pos = pos[:len(t.x)], pos[len(t.x):]
    fig.update_xaxes(**log_ticks(xs))
    if fig.layout.yaxis.type == "log":
        fig.update_yaxes(**log_ticks(ys))


def paper_scatter(points: Iterable[dict[str, Any]], report, name: str) -> go.Figure:
    """Multiply-adds vs channel interactions (log axes): Table 2's models and the current one."""
    fig = go.Figure()
    pts = list(points)
    for fam in dict.fromkeys(p["family"] for p in pts):
        ps = [p for p in pts if p["family"] == fam]
        fig.add_trace(go.Scatter(
            x=[p["flops (G)"] for p in ps], y=[p["interactions (G)"] for p in ps],
            mode="markers+text", name=fam, text=[p["model"] for p in ps],
            marker=dict(size=11, color=FAMILY_COLORS.get(fam)),
            customdata=[[p["video@1"], p["params (M)"]] for p in ps],
            hovertemplate="%{text}<br>%{x:.1f} G multiply-adds<br>%{y:.2f} G interactions"
                          "<br>%{customdata[1]:.1f} M params<br>video@1 %{customdata[0]}%"
                          "<extra>paper Table 2</extra>"))
    t = report.totals
    fig.add_trace(go.Scatter(
        x=[t.flops / 1e9], y=[max(t.interactions, 1) / 1e9], mode="markers+text", name="this design",
        text=[name],
        marker=dict(symbol="star", size=18, color="#222", line=dict(width=1, color="gold")),
        hovertemplate="%{text}<br>%{x:.2f} G multiply-adds<br>%{y:.3f} G interactions"
                      "<extra>current</extra>"))
    fig.update_xaxes(type="log", title="multiply-adds (G, paper FLOPs)")
    fig.update_yaxes(type="log", title="channel interactions (G pairs)")
    fig.update_layout(height=460, margin=dict(t=20, b=10, l=10, r=10))
    _placed_labels(fig, 700, 380)   # the plot area at 1280 px
    return fig


RUN_COLORS = ("#4c78a8", "#e45756", "#54a24b", "#f58518", "#b279a2", "#72b7b2", "#ff9da6",
              "#9d755d", "#bab0ac", "#eeca3b")


def run_color(i: int) -> str:
    """The colour of the ``i``-th run on a page (one colour per run across all its series)."""
    return RUN_COLORS[i % len(RUN_COLORS)]


def dash_of(label: str) -> str:
    """Line style by split: train solid, validation dashed, epoch means dotted."""
    return "dot" if "(epoch)" in label and "val" not in label else "dash" if "val" in label \
        else "solid"


def curves(series: dict[str, list[tuple[float, float]]], title: str, x_title: str,
           y_title: str, styles: dict[str, dict[str, str]] | None = None) -> go.Figure:
    """Line chart of several named (x, y) series; ``styles[label]`` may set ``color``,
    ``dash`` and ``group`` (legend group) of a series. Built unvalidated: a refresh redraws
    thousands of points, and plotly's per-point validation would cost more than the query."""
    data = []
    for label, pts in series.items():
        if pts:
            st = (styles or {}).get(label, {})
            data.append(dict(
                type="scatter", x=[p[0] for p in pts], y=[p[1] for p in pts], name=label,
                mode="lines+markers" if len(pts) < 30 else "lines",
                line={k: v for k, v in (("color", st.get("color")),
                                        ("dash", st.get("dash", dash_of(label)))) if v},
                **({"legendgroup": st["group"]} if st.get("group") else {}),
                hovertemplate=f"{label}<br>%{{x:.4g}}: %{{y:.4g}}<extra></extra>"))
    layout = dict(title=dict(text=title, font=dict(size=14)), height=340,
                  margin=dict(t=36, b=10, l=10, r=10), xaxis=dict(title=dict(text=x_title)),
                  yaxis=dict(title=dict(text=y_title)),
                  # at the figure's foot (container coordinates): the plot shrinks to make room,
                  # so a legend of many runs never covers the x-axis title
                  legend=dict(orientation="h", yref="container", yanchor="bottom", y=0, x=0,
                              font=dict(size=11)))
    ys = {y for t in data for y in t["y"]}
    if len(ys) == 1:   # a constant (e.g. the lr between steps of a schedule): a readable range
        v = ys.pop()
        pad = abs(v) * 0.5 or 1.0
        layout["yaxis"]["range"] = [v - pad, v + pad]
    return go.Figure(data=data, layout=layout, _validate=False)


def accuracy_vs(rows: list[dict[str, Any]], x: str, x_title: str) -> go.Figure:
    """The paper's Fig. 6/7 from the user's runs: val video@1 vs cost (log x), by block type."""
    fig = go.Figure()
    for block in dict.fromkeys(r["block"] for r in rows):
        rs = [r for r in rows if r["block"] == block]
        fig.add_trace(go.Scatter(x=[r[x] for r in rs], y=[r["video@1"] for r in rs],
                                 mode="markers+text", name=block,
                                 text=[_short(r["name"]) for r in rs], hovertext=[r["name"] for r in rs],
                                 marker=dict(size=11)))
    fig.update_xaxes(type="log", title=x_title)
    fig.update_yaxes(title="val video@1 (%)")
    # the legend above the plot: beside it, it squeezes a half-width chart
    fig.update_layout(height=400, margin=dict(t=40, b=10, l=10, r=10), legend_title_text="block",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    _placed_labels(fig, 360, 300)   # half the page at 1280 px
    return fig


def _short(s: str, width: int = 18) -> str:
    return s if len(s) <= width else s[:width - 1] + "…"
