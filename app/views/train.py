"""Train: pick an architecture, a dataset and hyper-parameters; enqueue a run."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import finetune_form
from app.dataset_view import checked_dataset, generate_synth, show_dataset_preview
from app.formatting import fmt_count
from app.queue_access import require_jobs_api, worker_rows
from app.session import BUILDER_SPEC, load_design
from backend.csn import ArchSpec, SpecError, count, list_presets, preset
from backend.csn.describe import describe_preset
from backend.paths import data_dir, data_roots

ss = st.session_state
st.title("Train")
api = require_jobs_api("Training")


try:
    ws = api.worker_status()
except Exception as e:  # a broken database, say: tell, do not crash
    ws = {"alive": False, "error": str(e)}
if ws.get("error"):
    st.error(f"Cannot read the workers' status: {ws['error']}")
elif ws["alive"]:
    st.success(f"A worker is running ({len(ws['workers'])} alive; {ws['queued']} queued, "
               f"{ws['running']} running, {ws['waiting']} waiting for resources).",
               icon=":material/check_circle:")
    st.dataframe(worker_rows(ws), hide_index=True, placeholder="—", key="train_workers")
else:
    st.warning("No worker is running: runs will wait in the queue until one starts. Start one "
               "from the repository root (`make run` starts one too):", icon=":material/warning:")
    st.code("huey_consumer jobs.tasks", language="bash")

# --- architecture ----------------------------------------------------------------------------
st.subheader("1. Architecture")
if not ss.get(BUILDER_SPEC) and (kept := load_design()) is not None:  # /train opened directly
    ss[BUILDER_SPEC] = kept.to_dict()
sources = (["Current builder design"] if ss.get(BUILDER_SPEC) else []) + ["Saved architecture",
                                                                          "Preset", finetune_form.SOURCE]
src = st.radio("Take it from", sources, horizontal=True, key="train_src")
spec, finetune_from = None, None
if src == finetune_form.SOURCE:
    spec, finetune_from = finetune_form.pick_model()
elif src == "Current builder design":
    spec = ArchSpec.from_dict(ss[BUILDER_SPEC])
elif src == "Saved architecture":
    saved = api.list_architectures()
    if not saved:
        st.info("No saved architectures yet: save one from the Builder's Export / save tab.")
    else:
        by_name = {a["name"]: a for a in saved}
        pick = st.selectbox("Saved architecture", list(by_name), key="train_saved")
        spec = ArchSpec.from_dict(by_name[pick]["spec"])
else:
    names = list_presets()
    pick = st.selectbox("Preset", names, index=names.index("ir-csn-26"), key="train_preset")
    st.caption(describe_preset(pick))
    spec = preset(pick)
if spec is not None:
    try:
        t = count(spec).totals
        st.caption(f"**{spec.name}**: {fmt_count(t.params)} params, {fmt_count(t.flops)} "
                   f"multiply-adds, {fmt_count(t.interactions)} interactions at "
                   f"{spec.frames}×{spec.height}×{spec.width} (training uses the frames and size "
                   "below; the classifier follows the dataset's classes).")
    except SpecError as e:
        st.error(f"This architecture is invalid: {e}")
        spec = None

# --- dataset ---------------------------------------------------------------------------------
st.subheader("2. Dataset")
dsrc = st.radio("Dataset", ["Generate a synthetic motion dataset", "A folder or CSV on the server"],
                horizontal=True, key="train_dsrc")
dataset = ""
if dsrc.startswith("Generate"):
    c = st.columns(4)
    per_class = c[0].number_input("Videos per class", 4, 2000, 24, key="synth_n",
                                  help="over all splits (70/15/15 train/val/test), 8 motion classes")
    seed = c[1].number_input("Seed", 0, 10**6, 0, key="synth_seed")
    ssize = c[2].number_input("Frame size", 32, 256, 64, step=16, key="synth_size")
    sframes = c[3].number_input("Frames per video", 8, 128, 32, key="synth_frames")
    out = str(data_dir() / "datasets" / f"synth-{per_class}-s{seed}-{ssize}px-{sframes}f")
    dataset = out
    if (Path(out) / "classes.txt").exists():
        st.success(f"Ready: `{out}`", icon=":material/folder:")
    elif st.button("Generate", icon=":material/auto_awesome:"):
        with st.spinner(f"Generating {per_class * 8} videos…"):
            ok, msg = generate_synth(out, int(per_class), int(seed), int(ssize), int(sframes))
        (st.success if ok else st.error)(msg)
        if ok:
            st.rerun()
    else:
        st.info(f"Not generated yet; it will be written to `{out}`.")
    dataset_ok = (Path(out) / "classes.txt").exists()
else:
    roots = ", ".join(f"`{r}`" for r in data_roots())
    typed = st.text_input("Path", key="train_path", placeholder="datasets/my_videos or list.csv",
                          help="a folder with train/ and val/ (each with one folder per class), "
                               "a folder per class, or a CSV of path,label; inside the data roots "
                               "(CSN_DATA_ROOTS); a relative path is looked up from the "
                               "working directory, then from each root")
    st.caption(f"Allowed data roots: {roots}")
    dataset, dataset_ok = checked_dataset(typed)
if dataset_ok:
    dataset_ok = show_dataset_preview(dataset)

# --- hyper-parameters ------------------------------------------------------------------------
st.subheader("3. Hyper-parameters")
h = st.columns(5)
opt = h[2].selectbox("Optimizer", ["sgd", "adamw"], key="hp_optimizer",
                     help="sgd: the paper's recipe; adamw: converges much faster on tiny nets and data")
hp = {
    "epochs": h[0].number_input("Epochs", 1, 1000, 5, key="hp_epochs"),
    "batch_size": h[1].number_input("Batch size", 1, 512, 8, key="hp_batch"),
    "optimizer": opt,
    # one widget per optimizer, so each keeps its own sensible default
    "lr": h[3].number_input("Learning rate", 1e-5, 10.0, 0.01 if opt == "sgd" else 0.001,
                            format="%.4f", key=f"hp_lr_{opt}"),
    "threads": h[4].number_input("CPU threads", 1, 64, 1, key="hp_threads"),
}
h = st.columns(5)
gpus = h[4].selectbox("GPUs", ["auto", *range(ws.get("gpus", 0) + 1)], key="hp_gpus",
                      help="auto: 1 when the worker has a GPU, else CPU; N > 1 runs N processes "
                           "(torchrun). A run waits until that many GPUs are free.")
hp["frames"] = h[0].number_input("Clip frames T", 1, 128, 8, key="hp_frames")
hp["size"] = h[1].number_input("Crop size", 16, 320, 64, step=16, key="hp_size")
hp["max_steps_per_epoch"] = h[2].number_input("Max steps/epoch (0 = all)", 0, 100000, 0,
                                              key="hp_maxsteps") or None
hp["workers"] = h[3].number_input("Data-loader workers", 0, 16, 0, key="hp_workers")
hp.update(finetune_form.controls(spec, dataset if dataset_ok else "", finetune_from))
name = st.text_input("Run name (optional)", key="train_name")
stall_min = st.number_input("Stall timeout, minutes (0 = none)", 0, 43200, 0, key="train_stall",
                            help="Fail the run when its trainer writes no event for this long "
                                 "(keep it above the longest validation pass).")

# --- enqueue ---------------------------------------------------------------------------------
ready = spec is not None and dataset_ok
if st.button("Enqueue run", type="primary", icon=":material/play_arrow:", disabled=not ready):
    try:
        run_id = api.enqueue_run(spec, dataset, {k: v for k, v in hp.items() if v is not None},
                                 name=name.strip() or None, gpus=None if gpus == "auto" else gpus,
                                 stall_timeout=stall_min * 60 or None)
    except Exception as e:  # queue or database trouble: say so inline
        st.error(f"Could not enqueue: {e}")
    else:
        ss["selected_run"] = run_id
        st.success(f"Queued run #{run_id}.", icon=":material/schedule:")
        st.page_link("views/run.py", label=f"Open run #{run_id}", icon=":material/monitoring:")
if not ready:
    st.caption("Choose a valid architecture and an existing dataset to enqueue.")
