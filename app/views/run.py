"""Run detail: live curves, progress, cancel / retry, log tail and error."""
from __future__ import annotations

import streamlit as st

from app import charts
from app.runs_data import STATUS_ICON, metric_series, pick_curves, run_row
from app.state import fmt_count, list_runs_or_stop, require_jobs_api

ss = st.session_state
st.title("Run detail")
api = require_jobs_api()
runs = list_runs_or_stop(api)
if not runs:
    st.info("No runs yet.")
    st.stop()
ids = [r["id"] for r in runs]
want = st.query_params.get("run") or ss.get("selected_run")
try:
    want = int(want) if want is not None else ids[0]
except ValueError:
    want = ids[0]
labels = {r["id"]: f"#{r['id']} {r.get('name') or ''} ({(r.get('spec') or {}).get('name', '?')})"
          for r in runs}
rid = st.selectbox("Run", ids, index=ids.index(want) if want in ids else 0,
                   format_func=lambda i: labels[i], key="run_pick")
st.query_params["run"] = str(rid)
ss["selected_run"] = rid

ACTIVE = ("queued", "running")


@st.fragment(run_every=2.0)
def live(run_id: int) -> None:
    """Re-read the run and its metrics every 2 s without reloading the page."""
    r = api.get_run(run_id)
    if r is None:
        st.error(f"Run #{run_id} no longer exists.")
        return
    row = run_row(r)
    c = st.columns([3, 1, 1, 1])
    c[0].progress(row["progress"], text=f"{STATUS_ICON.get(r['status'], '')} {r['status']} · "
                  f"epoch {r['epoch']}/{r['total_epochs'] or '?'} · step {r['step']}/"
                  f"{r['total_steps'] or '?'}")
    best = row["best val video@1 (%)"]
    c[1].metric("best val video@1", "—" if best is None else f"{best:.1f} %")
    hp = r.get("hparams") or {}
    at = f"one {hp.get('frames', '?')}×{hp.get('size', '?')}×{hp.get('size', '?')} clip (training)"
    for col, label, key, what in ((c[2], "multiply-adds", "MAdds (G)", "paper FLOPs"),
                                  (c[3], "interactions", "interactions (G)", "eq. 3 pairs")):
        v = row[key]
        col.metric(label, "—" if v is None else fmt_count(v * 1e9), help=f"{what} of {at}")
    b = st.columns([1, 1, 6])
    if r["status"] in ACTIVE and b[0].button("Cancel", icon=":material/stop:", key="cancel"):
        st.toast("Cancelling…" if api.cancel_run(run_id) else "The run had already finished.")
        st.rerun(scope="fragment")
    if r["status"] in ("failed", "cancelled", "crashed") and b[1].button(
            "Retry", icon=":material/replay:", key="retry"):
        st.toast("Re-queued (resumes from its last checkpoint)." if api.retry_run(run_id)
                 else "This run cannot be retried.")
        st.rerun(scope="fragment")
    if r.get("error"):
        st.error(r["error"], icon=":material/error:")
    curves = pick_curves(metric_series(api.get_metrics(run_id)))
    if curves:
        cols = st.columns(len(curves))
        for col, (title, series) in zip(cols, curves.items()):
            col.plotly_chart(charts.curves(series, title, "step", title), width="stretch",
                             key=f"curve_{title}")
    else:
        st.caption("No metrics yet.")
    with st.expander("Log tail", expanded=r["status"] in ("failed", "crashed")):
        st.code(r.get("log_tail") or "(empty)", language="text")
    with st.expander("Details"):
        st.json({k: r.get(k) for k in ("dataset", "hparams", "output_dir", "worker_id",
                                       "attempts", "created_at", "started_at", "finished_at")},
                expanded=True)
        st.json(r.get("spec") or {}, expanded=False)


live(rid)
