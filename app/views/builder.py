"""Builder: compose an ArchSpec from a preset or a JSON file and see its exact costs live.

The form's widgets hold the spec's fields in ``st.session_state`` (keys ``bld_*``); every run
turns them into one ArchSpec (``app.builder_form``: the form model) and counts it.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

from app import charts
from app.builder_form import (CLIP_FORM, HEAD_POOL, STAGE_FORM, canonical, edited_name,
                              form_to_spec, reshown_defaults, spec_to_form, stage_field_shown,
                              ui_message)
from app.views import profile_tab
from app.formatting import fmt_count, fmt_delta
from app.queue_access import jobs_api, save_architecture
from app.session import BUILDER_SPEC, FORM_PREFIX, load_design, remember_design
from backend.csn import explore
from backend.csn import UNITS, ArchSpec, SpecError, count, list_presets, preset
from backend.csn.bounds import MAX_JSON_BYTES
from backend.csn.loading import spec_from_text
from backend.csn.describe import describe_preset
from backend.csn.spec import STAGE_NAMES

session = st.session_state
LAST_VALID = "builder_last_valid"  # (spec, report) of the last valid design


def _form_values() -> dict[str, Any]:
    """The form's values, keyed as :mod:`app.builder_form` keys them (no prefix)."""
    return {k[len(FORM_PREFIX):]: v for k, v in session.items()
            if isinstance(k, str) and k.startswith(FORM_PREFIX)}


def _seed(spec: ArchSpec, overwrite: bool) -> None:
    """Put ``spec``'s fields into the form's session-state keys."""
    spec = canonical(spec)
    for field, value in spec_to_form(spec).items():
        if overwrite or FORM_PREFIX + field not in session:
            session[FORM_PREFIX + field] = value
    if overwrite or FORM_PREFIX + "base" not in session:
        session[FORM_PREFIX + "base"] = spec
        session[FORM_PREFIX + "baseline"] = explore.default_baseline(spec)


def _load_preset() -> None:
    session.pop("bld_upload_error", None)
    session.pop("bld_upload_note", None)
    session.pop(FORM_PREFIX + "loaded_from", None)
    _seed(preset(session[FORM_PREFIX + "preset"]), overwrite=True)


def _loaded_elsewhere(what: str) -> None:
    """The design came from a file or the database: the preset box no longer names it."""
    session[FORM_PREFIX + "preset"] = None
    session[FORM_PREFIX + "loaded_from"] = what


def _load_upload() -> None:
    upload = session.get("builder_upload")
    if upload is None:
        return
    name = upload.name[:80]
    try:
        if upload.size > MAX_JSON_BYTES:
            raise SpecError("", f"more than {MAX_JSON_BYTES:,} bytes of JSON")
        loaded = spec_from_text(upload.getvalue(), "upload")
    except SpecError as e:
        session["bld_upload_error"] = f"{name}: {e}"
        return
    session.pop("bld_upload_error", None)
    session["bld_upload_note"] = f"{name}: {loaded.note()}" if loaded.filled else None
    _seed(loaded.spec, overwrite=True)
    _loaded_elsewhere(f"loaded from {name}")


def _load_saved() -> None:
    pick = session.get("builder_saved")
    spec = _saved_specs().get(pick)
    if spec is not None:
        session.pop("bld_upload_error", None)
        _seed(spec, overwrite=True)
        _loaded_elsewhere(f"saved architecture {pick}")


def _saved_specs() -> dict[str, ArchSpec]:
    """Architectures saved in the database (empty without jobs/db or on a database error)."""
    api, _ = jobs_api()
    if api is None:
        return {}
    out = {}
    try:
        for arch in api.list_architectures():
            try:
                out[arch["name"]] = ArchSpec.from_dict(arch["spec"]).validate()
            except (SpecError, TypeError, ValueError):
                continue
    except Exception:  # the builder works without a database
        return {}
    return out


def form_spec() -> ArchSpec:
    """The ArchSpec the form describes, renamed ``<base>-edited`` when edited (and the name
    field with it)."""
    base: ArchSpec = session[FORM_PREFIX + "base"]
    spec = form_to_spec(_form_values(), base)
    named = edited_name(spec, base)
    if named is not spec:
        session[FORM_PREFIX + "name"] = named.name
    return named


# --- state -----------------------------------------------------------------------------------
presets = list_presets()
session.setdefault(FORM_PREFIX + "preset", "ir-csn-50")
# a fresh session resumes the last design
_seed(load_design() or preset(session[FORM_PREFIX + "preset"] or "ir-csn-50"), overwrite=False)
for _field, _value in reshown_defaults(_form_values(), session[FORM_PREFIX + "base"]).items():
    session[FORM_PREFIX + _field] = _value
spec = form_spec()
err: SpecError | None = None
err_at: tuple[int | None, str] = (None, "")
report = None
try:
    report = count(spec)
    if session.get(BUILDER_SPEC) != spec.to_dict():
        remember_design(spec)
    session[BUILDER_SPEC] = spec.to_dict()
    session[LAST_VALID] = (spec, report)
except SpecError as e:
    err, err_at = e, explore.error_field(e, spec)
# an invalid design keeps showing the last valid one's figures, marked stale
shown_spec, shown_report = ((spec, report) if report is not None
                             else session.get(LAST_VALID, (None, None)))


def inline_error(stage: int | None, field: str) -> None:
    """Show the spec error under the field it belongs to."""
    if err is not None and err_at == (stage, field):
        st.error(ui_message(err, err_at, spec), icon=":material/error:")


def widget(where, field: str, key: str, table: dict[str, tuple[str, str, dict]], **extra) -> Any:
    """One form widget, from the field's row in CLIP_FORM / STAGE_FORM."""
    label, kind, kw = table[field]
    kw = {**kw, **extra}
    if kind == "int":
        return where.number_input(label, step=kw.pop("step", 1), key=key, **kw)
    if kind == "toggle":
        return where.toggle(label, key=key, **kw)
    if kind == "select":
        return where.selectbox(label, kw.pop("options"), key=key, **kw)
    return where.text_input(label, key=key, **kw)


# --- page ------------------------------------------------------------------------------------
st.title("Architecture builder")
st.caption("Compose a 3D ResNet or channel-separated network (Tran et al., ICCV 2019) and see "
           "its exact parameters, multiply-adds and channel interactions (paper eq. 1-3).")

from_col, upload_col, compare_col = st.columns([2, 2, 2])
from_col.selectbox("Start from preset", presets, key=FORM_PREFIX + "preset",
                   on_change=_load_preset,
                   placeholder=session.get(FORM_PREFIX + "loaded_from") or "choose a preset",
                   help="Loading a preset resets the form.")
if session[FORM_PREFIX + "preset"]:
    from_col.caption(describe_preset(session[FORM_PREFIX + "preset"]))
saved_specs = _saved_specs()
if saved_specs:
    from_col.selectbox("…or a saved architecture", list(saved_specs), index=None,
                       key="builder_saved", on_change=_load_saved, placeholder="choose one")
upload_col.file_uploader("…or load a spec JSON", type=["json"], key="builder_upload",
                         on_change=_load_upload)
baseline = compare_col.selectbox("Compare with", presets, key=FORM_PREFIX + "baseline",
                                 help="Deltas are against this preset at the same clip, classes "
                                      "and head.")
if session.get("bld_upload_error"):
    upload_col.error(f"Could not load the spec: {session['bld_upload_error']}")
elif session.get("bld_upload_note"):
    upload_col.info(session["bld_upload_note"])

totals_box = st.container()

st.subheader("Input clip and head")
# the toggles get a row of their own: beside six inputs their labels are cut off at 1400 px
clip_cols = st.columns([2, 1, 1, 1, 1, 1]) + st.columns(6)[:len(CLIP_FORM) - 6]
for col, field in zip(clip_cols, CLIP_FORM):
    widget(col, field, FORM_PREFIX + field, CLIP_FORM)
if session[FORM_PREFIX + "head"] == "conv":
    for col, axis in zip(st.columns(6), HEAD_POOL):
        col.number_input(f"Head pool {axis}" + (" (0 = none)" if axis == "t" else ""), min_value=0,
                         step=1, key=f"{FORM_PREFIX}head_pool_{axis}")
loaded_spec = session[FORM_PREFIX + "base"]
st.caption("Input normalisation (from the loaded spec, 0-1 scale): mean "
           f"{list(loaded_spec.input_mean)}, std {list(loaded_spec.input_std)}, "
           f"{loaded_spec.input_order}")
if err is not None and err_at[0] is None:
    st.error(ui_message(err, err_at, spec), icon=":material/error:")

st.subheader("Stages")
for i, (col, stage_name) in enumerate(zip(st.columns(4), STAGE_NAMES)):
    with col.container(border=True):
        st.markdown(f"**{stage_name}_x**")
        block = session[f"{FORM_PREFIX}s{i}_block"]
        for field in STAGE_FORM:
            if stage_field_shown(i, field, block):
                got = widget(st, field, f"{FORM_PREFIX}s{i}_{field}", STAGE_FORM)
                block = got if field == "block" else block
            inline_error(i, field)

# --- totals (drawn above the form) -----------------------------------------------------------
with totals_box:
    if report is None:
        st.warning("This design is invalid; fix the field marked below. "
                   + ("The figures are the last valid design's (stale)." if shown_report else ""),
                   icon=":material/warning:")
    if shown_report is not None:
        totals = shown_report.totals
        try:
            base_totals = count(explore.baseline_spec(baseline, shown_spec)).totals
        except SpecError:
            base_totals = None
        metric_cols = st.columns(5)
        stale = " (stale)" if report is None else ""

        def delta(field: str) -> str | None:
            """The change of one total against the baseline's; None when equal or unknown."""
            cur = getattr(totals, field)
            ref = getattr(base_totals, field) if base_totals is not None else None
            return None if ref is None or cur == ref else fmt_delta(cur, ref, "")

        metric_cols[0].metric("Parameters" + stale, fmt_count(totals.params, ""), delta("params"),
                              delta_color="inverse",
                              help=f"{UNITS['params']}. Plus {fmt_count(totals.bn_params, '')} BN "
                                   f"and {fmt_count(totals.bias_params, '')} bias parameters.")
        metric_cols[1].metric("Multiply-adds" + stale, fmt_count(totals.flops, ""), delta("flops"),
                              delta_color="inverse", help="The paper's FLOPs. " + UNITS["flops"])
        metric_cols[2].metric("torch FLOPs" + stale, fmt_count(totals.torch_flops, ""),
                              delta("torch_flops"), delta_color="inverse",
                              help="2 per multiply-add: what torch.utils.flop_counter."
                                   "FlopCounterMode reports.")
        metric_cols[3].metric("Interactions" + stale, fmt_count(totals.interactions, ""),
                              delta("interactions"), delta_color="off",
                              help="Channel interactions (pairs). " + UNITS["interactions"])
        metric_cols[4].metric("Depth" + stale, f"{shown_spec.depth} layers",
                              help="conv1 + block convs + fc (paper naming)")
        st.caption(f"Deltas against {baseline} at the same clip and head. "
                   f"Clip {shown_spec.frames}×{shown_spec.height}×{shown_spec.width}, "
                   f"{shown_spec.num_classes} classes, {shown_spec.head} head. BN adds "
                   f"{fmt_count(totals.bn_params, '')} and biases "
                   f"{fmt_count(totals.bias_params, '')} "
                   f"parameters (all trainable: {fmt_count(totals.all_params, '')}).")

if shown_report is None:
    st.stop()
if report is None:
    st.caption(f"Below: the last valid design, **{shown_spec.name}** (stale).")
spec, report = shown_spec, shown_report

# --- detail ----------------------------------------------------------------------------------
tab_layers, tab_stages, tab_paper, tab_measure, tab_profile, tab_export = st.tabs(
    ["Layers", "Per stage", "Among the paper's models", "Measure on this machine",
     "Profile on this machine", "Export / save"])

with tab_layers:
    st.dataframe(profile_tab.layer_table(report), hide_index=True, width="stretch", height=420,
                 column_config={
                     "params": st.column_config.NumberColumn("params", format="localized"),
                     "MAdds (M)": st.column_config.NumberColumn("MAdds (M)", format="%.2f"),
                     "interactions": st.column_config.NumberColumn("interactions",
                                                                   format="localized"),
                     "activations (MiB/clip)": st.column_config.NumberColumn(
                         "activations (MiB/clip)", format="%.2f",
                         help="float32 bytes this row keeps for backward in training, per clip")})

with tab_stages:
    base_report = count(explore.baseline_spec(baseline, spec))
    st.plotly_chart(charts.stage_bars(report, base_report, spec.name, baseline), width="stretch")

with tab_paper:
    st.plotly_chart(charts.paper_scatter(explore.paper_points(), report, spec.name),
                    width="stretch")
    st.caption("Table 2 models counted at 8×224×224 (Kinetics video@1 from the paper in hover); "
               "the current design at its own clip.")

with tab_measure:
    st.write("Build the model and time a forward pass (batch 1, no grad, channels_last_3d) at "
             f"the clip above ({spec.frames}×{spec.height}×{spec.width}).")
    measure_cols = st.columns(3)
    threads = measure_cols[0].radio("CPU threads", [1, 2], horizontal=True, key="measure_threads")
    repeats = measure_cols[1].number_input("Repeats", min_value=1, max_value=10, value=2,
                                           key="measure_reps")
    with_base = measure_cols[2].checkbox(f"also time {baseline}", key="measure_base")
    if st.button("Measure", icon=":material/timer:"):
        with st.spinner("Building and timing…"):
            try:
                timing = {"spec": spec.to_json(), "cur": explore.measure_forward(
                    spec, threads=threads, repeats=int(repeats))}
                if with_base:
                    timing["base"] = explore.measure_forward(explore.baseline_spec(baseline, spec),
                                                             threads=threads, repeats=int(repeats))
                session["measure_result"] = timing
            except (RuntimeError, MemoryError, SpecError) as e:
                st.error(f"Could not run the model: {e}")
    timing = session.get("measure_result")
    if timing and timing["spec"] == spec.to_json():
        timing_cols = st.columns(3)
        timing_cols[0].metric("Forward (best)", f"{timing['cur']['ms']:.0f} ms",
                              help=f"mean {timing['cur']['ms_mean']:.0f} ms, "
                                   f"{int(timing['cur']['threads'])} thread(s)")
        timing_cols[1].metric("Multiply-adds", fmt_count(report.totals.flops, ""))
        if "base" in timing:
            timing_cols[2].metric(f"{baseline} forward", f"{timing['base']['ms']:.0f} ms")
        st.info("FLOPs do not predict the speed of depthwise convolutions: they do few "
                "multiply-adds per byte moved, so a CSN usually runs slower than its FLOPs "
                "suggest.", icon=":material/info:")

with tab_profile:
    profile_tab.render(spec, baseline)

with tab_export:
    st.download_button("Download spec JSON", spec.to_json(indent=2),
                       file_name=f"{spec.name or 'spec'}.json", mime="application/json",
                       icon=":material/download:")
    with st.form("save_arch", border=False):
        save_name = st.text_input("Save as (name)", value=spec.name)
        if st.form_submit_button("Save architecture", icon=":material/save:"):
            saved, message = save_architecture(save_name.strip() or spec.name, spec)
            (st.success if saved else st.error)(message)
    st.code(spec.to_json(indent=2), language="json")
