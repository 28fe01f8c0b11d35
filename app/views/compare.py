"""Compare runs: overlaid curves, and the paper's Figures 6 and 7 from your finished runs."""
from __future__ import annotations

import streamlit as st

from app import charts
from app.runs_data import metric_series, pick_curves, run_row
from app.state import list_runs_or_stop, require_jobs_api

st.title("Compare runs")
api = require_jobs_api()
runs = [run_row(r) for r in list_runs_or_stop(api)]
if not runs:
    st.info("No runs yet.")
    st.stop()

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

st.subheader("Curves")
labels = {r["id"]: f"#{r['id']} {r['name']} ({r['architecture']}, {r['status']})" for r in runs}
pick = st.multiselect("Runs", list(labels), default=list(labels)[:min(3, len(labels))],
                      format_func=lambda i: labels[i], key="cmp_runs")
merged: dict[str, dict[str, list]] = {}
for rid in pick:
    for title, series in pick_curves(metric_series(api.get_metrics(rid))).items():
        for label, pts in series.items():
            merged.setdefault(title, {})[f"#{rid} {label}"] = pts
if merged:
    for title, series in merged.items():
        st.plotly_chart(charts.curves(series, title, "step", title), width="stretch",
                        key=f"cmp_{title}")
elif pick:
    st.caption("The selected runs have no metrics yet.")
