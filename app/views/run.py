"""Run detail: live progress and curves, pace, the streamed log, downloads, notes, delete."""
from __future__ import annotations

import codecs
import json
from datetime import datetime, timezone
from pathlib import Path

import streamlit as st

from app import charts, features_panel
from app.export_view import export_section
from app.runs_data import (STATUS_ICON, devices_label, fmt_duration, fmt_when, live_metrics, metric_series,
                           pace, pick_curves, run_row, stall_note)
from app.formatting import fmt_count
from app.queue_access import list_runs_or_stop, require_jobs_api

ss = st.session_state
st.title("Run detail")
api = require_jobs_api()
from jobs import records  # noqa: E402  (after the jobs check above)

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
LOG_VIEW = 100_000   # characters of the log shown; the download has all of it


def stream_log(r: dict) -> tuple[str, bool]:
    """The run's ``train.log`` read on from where this session stopped: (text, cut)."""
    path = records.run_file(r, "train.log")
    if path is None:
        return r.get("log_tail") or "", False
    st_ = ss.setdefault("run_logs", {}).get(r["id"])
    if st_ is None or st_["path"] != str(path) or path.stat().st_size < st_["offset"]:
        logs = ss["run_logs"]
        logs.pop(r["id"], None)
        while len(logs) >= 8:                            # a session keeps a few runs' logs
            logs.pop(next(iter(logs)))
        st_ = logs[r["id"]] = {"path": str(path), "offset": 0, "text": "", "cut": False,
                               "utf8": codecs.getincrementaldecoder("utf-8")("replace")}
    with path.open("rb") as f:
        f.seek(st_["offset"])
        data = f.read()
    st_["offset"] += len(data)
    text = st_["text"] + st_["utf8"].decode(data)   # a character split between reads waits
    if len(text) > LOG_VIEW:
        text, st_["cut"] = text[-LOG_VIEW:], True
    st_["text"] = text
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n")), st_["cut"]


def header(r: dict, m) -> None:
    """Progress, pace, accuracy and costs."""
    row = run_row(r)
    st.progress(row["progress"], text=f"{STATUS_ICON.get(r['status'], '')} {r['status']} · "
                f"epoch {r['epoch']}/{r['total_epochs'] or '?'} · step {r['step']}/"
                f"{r['total_steps'] or '?'}")
    elapsed, eta, cps = pace(r, m, datetime.now(timezone.utc))
    c = st.columns(3) + st.columns(3)   # two rows: durations fit at 1280 px
    prior = r.get("prior_s") or 0.0
    c[0].metric("elapsed", fmt_duration(None if elapsed is None else elapsed + prior),
                help=f"Wall time over {r['attempts']} attempts; this attempt "
                     f"{fmt_duration(elapsed)}" if prior else "Wall time of the run")
    c[1].metric("ETA", fmt_duration(eta) if eta is not None else "—",
                help="Remaining training steps at this attempt's mean step rate "
                     "(validation not counted)")
    c[2].metric("clips/s", "—" if cps is None else f"{cps:.1f}", help="Training throughput, "
                "latest logged step")
    best = row["best val video@1 (%)"]
    c[3].metric("best val video@1", "—" if best is None else f"{best:.1f} %")
    hp = r.get("hparams") or {}
    at = f"one {hp.get('frames', '?')}×{hp.get('size', '?')}×{hp.get('size', '?')} clip (training)"
    for col, label, key, what in ((c[4], "multiply-adds", "MAdds (G)", "paper FLOPs"),
                                  (c[5], "interactions", "interactions (G)", "eq. 3 pairs")):
        v = row[key]
        col.metric(label, "—" if v is None else fmt_count(v * 1e9), help=f"{what} of {at}")


def actions(r: dict) -> None:
    b = st.columns([1, 1, 6])
    if r["status"] in ACTIVE and b[0].button("Cancel", icon=":material/stop:", key="cancel"):
        st.toast("Cancelling…" if api.cancel_run(r["id"]) else "The run had already finished.")
        st.rerun(scope="fragment")
    if r["status"] in ("failed", "cancelled", "crashed") and b[0].button(
            "Retry", icon=":material/replay:", key="retry"):
        resumes = any(Path(c["path"]).is_file() for c in r.get("checkpoints") or [])
        ok = api.retry_run(r["id"])
        st.toast(("Re-queued; resumes from its last checkpoint." if resumes else
                  "Re-queued; no checkpoint yet, so it starts again at step 0.") if ok
                 else "This run cannot be retried.")
        st.rerun(scope="fragment")


def downloads(r: dict) -> None:
    """The run's files and every stored metric point."""
    c = st.columns(5)
    cks = [ck for ck in r.get("checkpoints") or [] if Path(ck["path"]).is_file()]
    if cks:
        p = Path(cks[-1]["path"])
        c[0].download_button(f"Checkpoint (epoch {cks[-1]['epoch']})", p.read_bytes, p.name,
                             "application/octet-stream", key="dl_ckpt", on_click="ignore")
    else:
        c[0].button("Checkpoint", disabled=True, key="dl_ckpt_none",
                    help="No checkpoint file on this machine yet")
    jsonl = records.run_file(r, "metrics.jsonl")
    c[1].download_button("metrics.jsonl", jsonl.read_bytes if jsonl else b"", "metrics.jsonl",
                         "application/x-ndjson", disabled=jsonl is None, key="dl_jsonl",
                         on_click="ignore")
    c[2].download_button("metrics.csv", lambda: "".join(records.metrics_csv(r["id"])),
                         f"run_{r['id']}_metrics.csv", "text/csv", key="dl_csv", on_click="ignore",
                         help="Every stored point (the charts show a downsampled version)")
    c[3].download_button("spec.json", json.dumps(r.get("spec") or {}, indent=1),
                         f"run_{r['id']}_spec.json", "application/json", key="dl_spec",
                         on_click="ignore")
    log = records.run_file(r, "train.log")
    c[4].download_button("train.log", log.read_bytes if log else b"", "train.log", "text/plain",
                         disabled=log is None, key="dl_log", on_click="ignore")


@st.fragment(run_every=2.0)
def live(run_id: int) -> None:
    """Re-read the run and only its new metric points every 2 s, without reloading the page."""
    r = api.get_run(run_id)
    if r is None:
        st.error(f"Run #{run_id} no longer exists.")
        return
    m = live_metrics(ss.setdefault("run_metrics", {}), api, [r])[run_id]
    header(r, m)
    actions(r)
    if r.get("error"):
        st.error(r["error"], icon=":material/error:")
    if stall_note(r):
        st.warning(f"{stall_note(r)}: the trainer has written no event since"
                   + (f"; stall_timeout {r['stall_timeout']:g} s fails the run" if r.get("stall_timeout") else ""),
                   icon=":material/hourglass_empty:")
    curves = pick_curves(metric_series(m.points()))
    if curves:
        cols = st.columns(len(curves))
        for col, (title, series) in zip(cols, curves.items()):
            col.plotly_chart(charts.curves(series, title, "step", title), width="stretch",
                             key=f"curve_{title}")
        if m.reduced:
            st.caption(f"Long series are drawn with at most {m.max_points} points each (every "
                       "bucket's min, max and last); the downloads hold every point.")
    else:
        st.caption("No metrics yet.")
    downloads(r)
    text, cut = stream_log(r)
    with st.expander("Log", expanded=True):
        if cut:
            st.caption(f"The last {LOG_VIEW // 1000} kB; download train.log for all of it.")
        st.code(text or "(empty)", language="text", height=360, wrap_lines=True)


def manage(run_id: int) -> None:
    """Rename, notes, tags, details, delete."""
    r = api.get_run(run_id)
    if r is None:
        return
    with st.expander("Name, notes and tags"):
        with st.form(f"edit_{run_id}"):
            name = st.text_input("Name", r.get("name") or "", max_chars=200)
            tags = st.text_input("Tags (comma-separated)", ", ".join(r.get("tags") or []))
            notes = st.text_area("Notes", r.get("notes") or "")
            if st.form_submit_button("Save"):
                try:
                    records.update_run(run_id, name=name, notes=notes, tags=tags)
                    st.rerun()
                except ValueError as e:
                    st.error(str(e))
    with st.expander("Details"):
        st.table({"created": fmt_when(r.get("created_at")),
                  "started": fmt_when(r.get("started_at")),
                  "finished": fmt_when(r.get("finished_at")), "dataset": r.get("dataset"),
                  "output folder": r.get("output_dir") or "—", "worker": r.get("worker_id") or "—",
                  **({"Slurm job": devices_label(r)} if r.get("slurm_job") else {}),
                  "attempts": str(r.get("attempts"))})
        st.json({"hparams": r.get("hparams"), "spec": r.get("spec")}, expanded=False)
    features_panel.section(r)
    if r["status"] not in ACTIVE:
        with st.expander("Delete this run"):
            files = st.checkbox("Also delete its output folder (checkpoints, logs)", key="del_files")
            if st.button("Delete run", type="primary", icon=":material/delete:", key="del_run"):
                records.delete_run(run_id, files=files)
                ss.pop("selected_run", None)
                st.query_params.pop("run", None)
                st.rerun()


chosen = next(r for r in runs if r["id"] == rid)
if chosen.get("tags") or chosen.get("notes"):
    st.caption(" ".join(f"`{t}`" for t in chosen.get("tags") or []) + "  "
               + (chosen.get("notes") or ""))
live(rid)
if (detail := api.get_run(rid)) is not None:
    from app.views.run_eval import held_out_panel
    held_out_panel(detail)
manage(rid)
export_section(api.get_run(rid))
