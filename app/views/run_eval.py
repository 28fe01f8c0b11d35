"""Run detail's held-out evaluation: clip vs video accuracy, per-class accuracy, confusion matrix.

Computed on demand, in the background: a click starts ``python -m backend.evaluate CKPT
--held-out-of RUN_DIR --protocol P --out DIR`` as its own process, so training never pays for
it (the 30-view test can cost more than a tiny run's whole validation), it works for runs that
finished before, and a failure cannot touch the run's status. The report is cached beside the
checkpoint (``checkpoints/epoch_NNNN.eval-<protocol>/``: metrics.json, per_class.csv,
confusion.csv/.png, eval.log); ``metrics.json`` is written last, so its presence means done.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = {"kinetics": "kinetics: 10 clips × 3 crops (paper §5)",
             "centre": "centre: 10 clips × centre crop (paper §4.1)"}
_jobs: dict[str, subprocess.Popen] = {}   # report folder -> its evaluation, in this app process


def report_dir(ckpt: Path, protocol: str) -> Path:
    return ckpt.parent / f"{ckpt.stem}.eval-{protocol}"


def report_state(out: Path, ckpt: Path) -> str:
    """``done`` (a report newer than the checkpoint), ``running``, ``failed`` or ``none``."""
    metrics = out / "metrics.json"
    if metrics.is_file() and metrics.stat().st_mtime >= ckpt.stat().st_mtime:
        return "done"
    job = _jobs.get(str(out))
    if job is not None:
        return "running" if job.poll() is None else "failed"
    pid = out / "eval.pid"
    if pid.is_file():            # started by an earlier app process
        try:
            os.kill(int(pid.read_text()), 0)
            return "running"
        except (OSError, ValueError):
            return "failed"
    return "none"


def start_report(ckpt: Path, run_dir: Path, protocol: str) -> None:
    out = report_dir(ckpt, protocol)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").unlink(missing_ok=True)
    threads = str(max(1, (os.cpu_count() or 2) // 2))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with (out / "eval.log").open("wb") as log:
        job = subprocess.Popen(
            [sys.executable, "-m", "backend.evaluate", str(ckpt), "--held-out-of", str(run_dir),
             "--protocol", protocol, "--out", str(out), "--threads", threads],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True)
    _jobs[str(out)] = job
    (out / "eval.pid").write_text(str(job.pid))


def _last_error(out: Path) -> str:
    lines = [ln for ln in (out / "eval.log").read_text(errors="replace").splitlines() if ln.strip()] \
        if (out / "eval.log").is_file() else []
    return (lines[-1] if lines else "the evaluation stopped without a message")[:500]


def show_report(out: Path) -> None:
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    st.caption(f"{m['videos']} videos of {m['data']}; {m['clips']} clips × {m['crops']} crop(s) "
               f"each at {m['frames']}×{m['size']}×{m['size']}, rate {m['rate']}")
    c = st.columns(4)
    c[0].metric("clip@1", f"{m['clip_top1']:.1%}", help="One clip's centre crop, averaged over clips")
    c[1].metric("video@1", f"{m['video_top1']:.1%}", help="Softmax averaged over all views of a video")
    c[2].metric("video@5", f"{m['video_top5']:.1%}")
    c[3].metric("mean class@1", f"{m['mean_class_top1']:.1%}", help="video@1 averaged over classes")
    if m["bad_videos"]:
        st.warning(f"{m['bad_videos']} held-out video(s) could not be read and are not counted.")
    left, right = st.columns([2, 3])
    left.dataframe([{"class": r["class"], "videos": r["videos"],
                     "clip@1 (%)": None if r["clip_top1"] is None else round(100 * r["clip_top1"], 1),
                     "video@1 (%)": None if r["video_top1"] is None else round(100 * r["video_top1"], 1)}
                    for r in m["per_class"]], hide_index=True, key="eval_per_class")
    right.image(str(out / "confusion.png"), caption="Confusion matrix (rows: true class, share of its videos)")
    d = st.columns(3)
    for col, name, mime in zip(d, ("per_class.csv", "confusion.csv", "confusion.png"),
                               ("text/csv", "text/csv", "image/png")):
        col.download_button(name, (out / name).read_bytes(), name, mime, key=f"dl_eval_{name}",
                            on_click="ignore")


def held_out_panel(r: dict) -> None:
    """The panel for run ``r`` (a jobs.api run dict)."""
    cks = [Path(c["path"]) for c in r.get("checkpoints") or [] if Path(c["path"]).is_file()]
    with st.expander("Held-out evaluation: clip vs video accuracy, per class, confusion matrix",
                     expanded=True):
        if r["status"] in ("queued", "running") or not cks or not r.get("output_dir"):
            st.caption("Available once the run has finished with a checkpoint on this machine.")
            return
        protocol = st.radio("Protocol", list(PROTOCOLS), format_func=PROTOCOLS.get,
                            horizontal=True, key="eval_protocol")
        ckpt, out = cks[-1], report_dir(cks[-1], protocol)
        report(r, ckpt, out, protocol)


def report(r: dict, ckpt: Path, out: Path, protocol: str) -> None:
    state = report_state(out, ckpt)
    if state == "running":
        _wait(out, ckpt)
        return
    if state == "failed":
        st.error(f"The evaluation failed: {_last_error(out)}", icon=":material/error:")
    if state == "done":
        show_report(out)
    label = "Evaluate again" if state == "done" else "Evaluate the held-out set"
    if st.button(label, icon=":material/fact_check:", key="eval_start",
                 help=f"Runs {ckpt.name} over the run's test split (else its validation split) "
                      "in the background; the report is kept beside the checkpoint"):
        start_report(ckpt, Path(r["output_dir"]), protocol)
        st.rerun()


@st.fragment(run_every=2.0)
def _wait(out: Path, ckpt: Path) -> None:
    if report_state(out, ckpt) != "running":
        st.rerun()
    st.info("Evaluating in the background…", icon=":material/hourglass_top:")
