"""Compare runs: overlaid curves (one colour per run), what differs between them, and the
paper's Figures 6 and 7 from your finished runs."""
from __future__ import annotations

import streamlit as st

from app import charts
from app.runs_data import (X_AXES, config_diff, first_time, live_metrics, metric_series,
                           pick_curves, run_label, run_row, x_of)
from app.queue_access import list_runs_or_stop, require_jobs_api

ss = st.session_state
st.title("Compare runs")
api = require_jobs_api()
raw = list_runs_or_stop(api)
runs = [run_row(r) for r in raw]
if not runs:
    st.info("No runs yet.")
    st.stop()
by_id = {r["id"]: r for r in raw}

st.subheader("Curves")
labels = {r["id"]: f"#{r['id']} {r['name']} ({r['architecture']}, {r['status']})" for r in runs}
c1, c2 = st.columns([3, 1])
pick = c1.multiselect("Runs", list(labels), default=list(labels)[:min(3, len(labels))],
                      format_func=lambda i: labels[i], key="cmp_runs")
axis = c2.radio("x-axis", list(X_AXES), horizontal=True, key="cmp_x")


@st.fragment(run_every=5.0)
def curves(pick: list[int], axis: str) -> None:
    """Each selected run's curves; only new points are read on a refresh."""
    chosen = [by_id[i] for i in pick if i in by_id]
    cache = live_metrics(ss.setdefault("run_metrics", {}), api, chosen)
    merged: dict[str, dict[str, list]] = {}
    styles: dict[str, dict[str, str]] = {}
    for i, r in enumerate(chosen):
        pts = cache[r["id"]].points()
        for title, series in pick_curves(metric_series(pts, x_of(r, axis, first_time(pts)))).items():
            for label, xy in series.items():
                name = f"{run_label(r, 16)} · {label}"
                merged.setdefault(title, {})[name] = xy
                styles[name] = {"color": charts.run_color(i), "group": str(r["id"])}
    if merged:
        cols = st.columns(min(2, len(merged)))
        for j, (title, series) in enumerate(merged.items()):
            cols[j % len(cols)].plotly_chart(
                charts.curves(series, title, X_AXES[axis], title, styles), width="stretch",
                key=f"cmp_{title}")
        st.caption("One colour per run; solid: training steps, dashed: validation, dotted: "
                   "epoch means. Long series are drawn downsampled (each bucket's min, max and "
                   "last point).")
    elif pick:
        st.caption("The selected runs have no metrics yet.")


curves(pick, axis)
if len(pick) > 1:
    st.subheader("What differs")
    diff = config_diff([by_id[i] for i in pick if i in by_id])
    if diff:
        st.dataframe(diff, hide_index=True, placeholder="—", width="stretch", key="cmp_diff")
    else:
        st.caption("The selected runs have the same data, hyper-parameters and architecture.")

st.subheader("Accuracy vs cost (the paper's Figures 6 and 7, from your runs)")
done = [dict(r, **{"video@1": r["best val video@1 (%)"]}) for r in runs
        if r["best val video@1 (%)"] is not None and r["MAdds (G)"] is not None]
if done:
    a, b = st.columns(2)
    a.plotly_chart(charts.accuracy_vs(done, "MAdds (G)", "multiply-adds (G, log)"), width="stretch",
                   key="fig6")
    b.plotly_chart(charts.accuracy_vs(done, "interactions (G)", "channel interactions (G, log)"),
                   width="stretch", key="fig7")
    st.caption("Best validation video@1 of each run with a validation score, coloured by block "
               "type. In the paper (Kinetics), accuracy tracks interactions more than FLOPs.")
else:
    st.info("No run has a validation video@1 yet.")
