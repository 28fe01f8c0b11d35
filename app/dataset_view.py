"""The Train page's dataset preview: what an accepted path holds, as the trainer reads it."""
from __future__ import annotations

import os

import streamlit as st


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
