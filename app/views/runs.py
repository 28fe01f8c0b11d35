"""Runs: every training run with status, progress, architecture, accuracy and costs (live)."""
from __future__ import annotations

import streamlit as st

from app.runs_data import run_row
from app.queue_access import list_runs_or_stop, require_jobs_api

st.title("Runs")
api = require_jobs_api()
if not list_runs_or_stop(api, limit=1):
    st.info("No runs yet.")
    st.page_link("views/train.py", label="Start one on the Train page", icon=":material/play_arrow:")
    st.stop()


@st.fragment(run_every=2.0)
def table() -> None:
    """Re-read the runs every 2 s (status, progress, accuracy) without reloading the page."""
    rows = [run_row(r) for r in list_runs_or_stop(api)]
    f1, f2, f3 = st.columns(3)
    want_status = f1.multiselect("Status", sorted({r["status"] for r in rows}), key="runs_status",
                                 placeholder="all")
    want_block = f2.multiselect("Block type", sorted({r["block"] for r in rows}), key="runs_block",
                                placeholder="all")
    want_tag = f3.multiselect("Tags", sorted({t for r in rows for t in r["tags"]}),
                              key="runs_tags", placeholder="all")
    shown = [r for r in rows if (not want_status or r["status"] in want_status)
             and (not want_block or r["block"] in want_block)
             and (not want_tag or set(want_tag) & set(r["tags"]))]
    st.caption(f"{len(shown)} of {len(rows)} runs. Select a row to open it. Costs are per clip at "
               "each run's training frames and crop size; hyper-parameters a run did not set show "
               "the trainer's default, and — marks what is not known yet (no validation so far) "
               "or, for lr, the optimizer's default scaled by the batch.")
    ids = hash(tuple(r["id"] for r in shown))   # new rows: a new key drops a stale selection
    event = st.dataframe(
        shown, hide_index=True, width="stretch", placeholder="—", key=f"runs_table_{ids}", on_select="rerun",
        selection_mode="single-row",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                        format="percent"),
            "best val video@1 (%)": st.column_config.NumberColumn(format="%.1f"),
            "MAdds (G)": st.column_config.NumberColumn(format="%.2f"),
            "interactions (G)": st.column_config.NumberColumn(format="%.3f"),
            "tags": st.column_config.ListColumn("tags"),
            "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        })
    sel = event.selection.rows if event is not None else []
    if sel and sel[0] < len(shown):
        rid = shown[sel[0]]["id"]
        st.page_link("views/run.py", label=f"Open run #{rid}", icon=":material/monitoring:",
                     query_params={"run": rid})


table()
st.page_link("views/compare.py", label="Compare runs", icon=":material/compare:")
