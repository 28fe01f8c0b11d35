"""The pages' datasets: a typed path checked against the data roots, the preview of what an
accepted path holds (as the trainer reads it), and the synthetic dataset generated."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import streamlit as st

from backend.paths import PathRefused, check_dataset

ROOT = Path(__file__).resolve().parent.parent


def checked_dataset(typed: str, require: str | None = None) -> tuple[str, bool]:
    """``(resolved path, usable)`` for a dataset path typed on a page: inside the data roots
    (``backend.paths.check_dataset``) and existing, with ``require`` (e.g. ``classes.txt``)
    inside it when given. Shows the refusal or what is missing; never the file's contents."""
    if not typed:
        return "", False
    try:
        dataset = str(check_dataset(typed))
    except PathRefused as e:
        st.error(str(e), icon=":material/block:")
        return "", False
    if not (Path(dataset) / (require or "")).exists():
        st.error(f"No dataset with a {require} at {typed}" if require
                 else f"No such file or folder in the data roots: {typed}")
        return dataset, False
    return dataset, True


def generate_synth(out: str, per_class: int, seed: int, size: int, frames: int,
                   timeout: float = 900) -> tuple[bool, str]:
    """Run ``python -m backend.synth`` into ``out``; (ok, message for people)."""
    cmd = [sys.executable, "-m", "backend.synth", "--out", out, "--per-class", str(per_class),
           "--seed", str(seed), "--size", str(size), "--frames", str(frames)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"generation took longer than {timeout:.0f} s"
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"exit status {p.returncode}"
    return True, f"generated {out}"


@st.cache_data(ttl=60, max_entries=16, show_spinner="Reading the dataset…")
def _preview(path: str, stamp: float):
    """(preview, error) for ``path``; ``stamp`` (its mtime) invalidates the cache on change."""
    from backend.data.preview import preview_dataset
    from backend.data.datasets import DatasetError

    try:
        return preview_dataset(path), ""
    except (DatasetError, OSError) as e:
        return None, str(e)


@st.cache_data(max_entries=64, show_spinner=False)
def _thumb(path: str, stamp: float):
    from backend.data.preview import first_frame
    from backend.data.video import VideoError

    try:
        return first_frame(path)
    except (VideoError, OSError):
        return None


def show_dataset_preview(path: str) -> bool:
    """Show what ``path`` holds (videos, classes, split sizes, thumbnails, which split
    validates); False (with the reason shown) when the trainer could not use it."""
    try:
        stamp = os.stat(path).st_mtime
    except OSError:
        return False
    pv, err = _preview(path, stamp)
    if pv is None:
        st.error(f"The trainer cannot use this dataset: {err}", icon=":material/error:")
        return False
    test = f", {pv.test} test (left for evaluation)" if pv.test is not None else ""
    st.success(f"Found {pv.train + pv.val + (pv.test or 0)} videos in {len(pv.classes)} classes: "
               f"{pv.train} train, {pv.val} validation{test}. Validation: {pv.validation}.",
               icon=":material/folder_open:")
    if pv.val == 0:
        st.warning("No validation videos: the run will report no validation accuracy.",
                   icon=":material/warning:")
    shots = [(c, _thumb(p, stamp)) for c, p in pv.samples]
    shots = [(c, im) for c, im in shots if im is not None]
    if shots:
        cols = st.columns(8)
        for col, (c, im) in zip(cols, shots):
            col.image(im, caption=c, width="stretch")
    with st.expander(f"Videos per class ({len(pv.classes)} classes)"):
        st.dataframe([{"class": c, "train": n[0], "validation": n[1]}
                      for c, n in pv.per_class.items()], hide_index=True, key="ds_classes")
    return True
