"""The Train page's fine-tuning parts: start from a model the demo lists, choose what trains,
and show how many parameters will (``backend.training.finetune``, the trainer's own rules)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

SOURCE = "A trained or imported model (fine-tune)"


@st.cache_data(max_entries=8, show_spinner=False)
def _checkpoint_spec(path: str, mtime: float) -> tuple[dict, int] | str:
    """(spec dict, number of classes) of a checkpoint, or the reason it cannot be read."""
    from backend.training.checkpoint import CheckpointError, read_checkpoint
    try:
        ck = read_checkpoint(path)
    except CheckpointError as e:
        return str(e)
    return dict(ck["spec"]), len(ck["classes"])


def pick_model() -> tuple[Any, str | None]:
    """(spec, checkpoint path) of the model chosen among the demo's list; (None, None) if none."""
    from app.demo import discover_models
    from backend.csn import ArchSpec

    models = discover_models()
    if not models:
        st.info("No model to start from yet: train one, or import one with "
                "`python -m backend.convert SRC --out <data dir>/models/NAME.pt`.")
        return None, None
    pick = st.selectbox("Model", list(models), key="train_ft_model",
                        help="the models the Demo lists: the shipped one, finished runs' newest "
                             "checkpoints and <data dir>/models/*.pt (imports)")
    entry = models[pick]
    got = _checkpoint_spec(entry.path, Path(entry.path).stat().st_mtime)
    if isinstance(got, str):
        st.error(got)
        return None, None
    spec_d, n_classes = got
    st.caption(f"{entry.origin}; {n_classes} classes (a new classifier is made when the "
               f"dataset's classes differ); made for {spec_d.get('frames')}×{spec_d.get('height')}²"
               " clips: set the clip frames and crop size below to match, or the weights see "
               "inputs they were not trained on.")
    return ArchSpec.from_dict(spec_d), entry.path


def controls(spec: Any, dataset: str, finetune_from: str | None) -> dict[str, Any]:
    """The fine-tuning widgets and the trainable-parameter count; returns the TrainConfig
    fields that differ from their defaults."""
    from dataclasses import replace

    from backend.training.finetune import FinetunePlan, planned_counts

    top, bottom = st.columns(2), st.columns(2)    # two per row: the labels fit at 1280 px
    probe = bottom[0].checkbox("Linear probe (only the head trains)", key="hp_linear_probe")
    frozen = top[0].selectbox("Frozen stages", [-1, 0, 1, 2, 3, 4], key="hp_frozen_stages",
                              disabled=probe, format_func=lambda n: {
                                  -1: "none", 0: "stem"}.get(n, f"stem + conv2..conv{n + 1}"))
    norm_eval = bottom[1].checkbox("Freeze BatchNorm statistics (norm_eval)", key="hp_norm_eval")
    mult = top[1].number_input("Backbone lr × (head lr × 1)", 0.001, 100.0, 1.0, format="%.3f",
                               key="hp_backbone_lr_mult", disabled=probe)
    plan = FinetunePlan(-1 if probe else frozen, norm_eval, probe, 1.0 if probe else mult)
    hp = {"frozen_stages": plan.frozen_stages, "norm_eval": norm_eval, "linear_probe": probe,
          "backbone_lr_mult": plan.backbone_lr_mult, "finetune_from": finetune_from}
    if spec is not None:
        classes = Path(dataset, "classes.txt") if dataset else None
        n = (len([ln for ln in classes.read_text().splitlines() if ln.strip()])
             if classes is not None and classes.is_file() else spec.num_classes)
        counts = planned_counts(replace(spec, num_classes=n), plan)
        st.caption(f"**{counts['trainable_params']:,} of {counts['total_params']:,} parameters "
                   f"will train** ({counts['frozen_params']:,} frozen; classifier for {n} classes).")
    defaults = {"frozen_stages": -1, "norm_eval": False, "linear_probe": False, "backbone_lr_mult": 1.0}
    return {k: v for k, v in hp.items() if v is not None and defaults.get(k) != v}
