"""Run detail's "Extract features" section: runs ``python -m backend.features`` with the run's
newest checkpoint in the background (into ``<run folder>/features/``), shows its progress and
offers the files when done. Running the command again resumes it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import streamlit as st

from backend.features import LAYERS

ROOT = Path(__file__).resolve().parent.parent
_STARTED: dict[int, subprocess.Popen] = {}   # by pid: polled, so a finished one is reaped


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    if pid in _STARTED:
        return _STARTED[pid].poll() is None
    try:
        os.kill(pid, 0)   # started by another app process
    except OSError:
        return False
    return True


def command(checkpoint: str, videos: str, out: Path, layer: str, clips: int, crops: int) -> list[str]:
    return [sys.executable, "-m", "backend.features", checkpoint, videos, "--layer", layer,
            "--clips", str(clips), "--crops", str(crops), "--out", str(out)]


def start(cmd: list[str], log: Path) -> int:
    """Start the extraction detached from this page (its output goes to ``log``)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with log.open("ab") as f:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
    _STARTED[p.pid] = p
    log.with_suffix(".pid").write_text(str(p.pid))
    return p.pid


def section(r: dict) -> None:
    """The expander for run ``r`` (needs a checkpoint file and an output folder)."""
    from app.dataset_view import checked_dataset

    cks = [c for c in r.get("checkpoints") or [] if Path(c["path"]).is_file()]
    if not cks or not r.get("output_dir"):
        return
    with st.expander("Extract features"):
        typed = st.text_input("Videos (folder or CSV inside the data roots)", r.get("dataset") or "",
                              key="feat_videos")
        c = st.columns(3)
        layer = c[0].selectbox("Layer", LAYERS, key="feat_layer")
        clips = c[1].number_input("Clips per video", 1, 30, 10, key="feat_clips")
        crops = c[2].selectbox("Crops", [1, 3], key="feat_crops")
        out = Path(r["output_dir"]) / "features" / f"{layer}.npy"
        log, meta = out.with_suffix(".log"), out.with_suffix(".meta.json")
        running = _alive(log.with_suffix(".pid"))
        videos, ok = checked_dataset(typed)
        if st.button("Extract (resumes an interrupted one)", key="feat_go", disabled=running or not ok):
            start(command(cks[-1]["path"], videos, out, layer, int(clips), int(crops)), log)
            running = True
        if log.exists():
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-8:]
            st.code("\n".join(tail) or "(starting)", language="text")
        if running:
            st.caption("Running… (this section refreshes with the page)")
        elif meta.exists() and json.loads(meta.read_text()).get("complete") and out.exists():
            d = st.columns(3)
            d[0].download_button(out.name, out.read_bytes, out.name, key="feat_dl_npy", on_click="ignore")
            for i, suffix in ((1, ".index.csv"), (2, ".bad.csv")):
                p = out.with_suffix(suffix)
                if p.exists():
                    d[i].download_button(p.name, p.read_bytes, p.name, "text/csv",
                                         key=f"feat_dl{suffix}", on_click="ignore")
