"""Runs: every training run with status, progress, architecture, accuracy and costs."""
from __future__ import annotations

import streamlit as st

from app.runs_data import run_row
from app.state import list_runs_or_stop, require_jobs_api

st.title("Runs")
api = require_jobs_api()
rows = [run_row(r) for r in list_runs_or_stop(api)]
if not rows:
    st.info("No runs yet.")
    st.page_link("views/train.py", label="Start one on the Train page", icon=":material/play_arrow:")
    st.stop()

f1, f2 = st.columns(2)
statuses = sorted({r["status"] for r in rows})
blocks = sorted({r["block"] for r in rows})
want_status = f1.multiselect("Status", statuses, key="runs_status", placeholder="all")
want_block = f2.multiselect("Block type", blocks, key="runs_block", placeholder="all")
shown = [r for r in rows if (not want_status or r["status"] in want_status)
         and (not want_block or r["block"] in want_block)]
st.caption(f"{len(shown)} of {len(rows)} runs. Select a row to open it. Costs are per clip at "
           "each run's training frames and crop size.")
event = st.dataframe(
    shown, hide_index=True, width="stretch", key="runs_table", on_select="rerun",
    selection_mode="single-row",
    column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                    format="percent"),
        "best val video@1 (%)": st.column_config.NumberColumn(format="%.1f"),
        "MAdds (G)": st.column_config.NumberColumn(format="%.2f"),
        "interactions (G)": st.column_config.NumberColumn(format="%.3f"),
        "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
    })
sel = event.selection.rows if event is not None else []
if sel:
    rid = shown[sel[0]]["id"]
    st.page_link("views/run.py", label=f"Open run #{rid}", icon=":material/monitoring:",
                 query_params={"run": rid})
st.page_link("views/compare.py", label="Compare runs", icon=":material/compare:")
