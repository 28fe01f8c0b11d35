"""Builder: compose an ArchSpec from a preset or a JSON file and see its exact costs live.

The form's widgets hold the spec's fields in ``st.session_state`` (keys ``bld_*``); every run
turns them into one ArchSpec (``dataclasses.replace`` on the loaded spec) and counts it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import streamlit as st

from app import charts
from app.views import profile_tab
from app.state import (BUILDER_SPEC, FORM_PREFIX as K, fmt_count, fmt_delta, jobs_api, load_design,
                       remember_design, save_architecture)
from backend.csn import explore
from backend.csn import BLOCK_TYPES, UNITS, ArchSpec, SpecError, count, list_presets, preset
from backend.csn.bounds import MAX_JSON_BYTES
from backend.csn.loading import spec_from_text
from backend.csn.describe import describe_preset
from backend.csn.presets import DEFAULT_GROUPS, DEFAULT_PW_GROUPS
from backend.csn.spec import HEADS, STAGE_NAMES, canonical_block

G_BLOCKS = ("simple-G", "bottleneck-G")
BLOCK_LABELS = {"bottleneck-D": "bottleneck-D (ir-CSN)", "ip": "ip (ip-CSN)"}
# a stage's temporal stride: form value <-> spec value (None follows the clip's T-stride)
TSTRIDE = {"auto": None, "2": True, "1": False}
TSTRIDE_LABELS = {"auto": "as T-stride", "2": "2 (halve T)", "1": "1 (keep T)"}
ss = st.session_state
LAST_VALID = "builder_last_valid"  # (spec, report) of the last valid design

# The form, generated from these tables: widget key = K + spec field (stage fields: K + "s{i}_"
# + field); label, widget kind and its arguments. Spec fields not listed keep the loaded value.
CLIP_FORM: dict[str, tuple[str, str, dict]] = {
    "name": ("Name", "text", {}),
    "frames": ("Frames T", "int", dict(min_value=1, max_value=512)),
    "height": ("Height H", "int", dict(min_value=8, max_value=1024, step=8)),
    "width": ("Width W", "int", dict(min_value=8, max_value=1024, step=8)),
    "num_classes": ("Classes", "int", dict(min_value=1, max_value=100000)),
    "head": ("Head", "select", dict(options=HEADS, help="fc: global average pool + Linear; conv: "
                                    "[avg-pool] + 1x1x1 conv classifier")),
    "pool1": ("pool1", "toggle", dict(help="max-pool 1x3x3 stride 1x2x2 after conv1")),
    "pool2": ("pool2", "toggle", dict(help="max-pool 2x1x1 stride 2x1x1 after conv2_x "
                                      "(mmaction2's with_pool2)")),
    "temporal_stride": ("T-stride", "toggle", dict(
        help="Temporal striding: 2x2x2 strides at conv3_1, conv4_1, conv5_1 (off: 1x2x2)")),
}
STAGE_FORM: dict[str, tuple[str, str, dict]] = {
    "block": ("Block type", "select", dict(options=BLOCK_TYPES,
                                           format_func=lambda x: BLOCK_LABELS.get(x, x))),
    "blocks": ("Blocks", "int", dict(min_value=1, max_value=64)),
    "width": ("Width (output channels)", "int", dict(min_value=1, max_value=8192)),
    "inner": ("Inner width (3x3x3 channels)", "int", dict(min_value=1, max_value=8192)),
    "groups": ("Groups (3x3x3)", "int", dict(min_value=1, max_value=8192)),
    "pw_groups": ("Pointwise groups (1x1x1)", "int", dict(min_value=1, max_value=8192)),
    "temporal_stride": ("Temporal stride", "select", dict(
        options=list(TSTRIDE), format_func=TSTRIDE_LABELS.get,
        help="Stride in time of the stage's first block")),
}
HEAD_POOL = ("t", "h", "w")


def stage_field_shown(i: int, field: str, block: str) -> bool:
    """Whether a stage field is on the form for this block type (hidden ones take the value
    that leaves the design unchanged: inner = width, groups = 1, ...)."""
    return {"inner": not block.startswith("simple"), "groups": block in G_BLOCKS,
            "pw_groups": block == "bottleneck-DG", "temporal_stride": i > 0}.get(field, True)


# --- spec <-> form: one conversion each way ---------------------------------------------------
def spec_to_form(spec: ArchSpec) -> dict[str, Any]:
    """The form's session-state values for ``spec``."""
    vals: dict[str, Any] = {f: getattr(spec, f) for f in CLIP_FORM}
    vals.update({f"head_pool_{a}": v for a, v in zip(HEAD_POOL, spec.head_pool)})
    back = {v: k for k, v in TSTRIDE.items()}
    for i, s in enumerate(spec.stages):
        vals.update({f"s{i}_{f}": getattr(s, f) for f in STAGE_FORM})
        vals[f"s{i}_block"] = canonical_block(s.block)
        vals[f"s{i}_temporal_stride"] = back[s.temporal_stride]
    return vals


def form_to_spec(vals: dict[str, Any], base: ArchSpec) -> ArchSpec:
    """The ArchSpec the form values describe, on top of ``base`` (hidden fields neutral)."""
    stages = []
    for i, s in enumerate(base.stages):
        b = vals[f"s{i}_block"]
        got = {f: vals[f"s{i}_{f}"] for f in STAGE_FORM if stage_field_shown(i, f, b)}
        got.setdefault("inner", vals[f"s{i}_width"])
        got["temporal_stride"] = TSTRIDE[got.get("temporal_stride", "auto")]
        stages.append(replace(s, **{"groups": 1, "pw_groups": 1, **got}))
    clip = {f: vals[f] for f in CLIP_FORM}
    clip["name"] = clip["name"] or "custom"
    hp = tuple(int(vals[f"head_pool_{a}"]) for a in HEAD_POOL) if clip["head"] == "conv" else (0, 0, 0)
    return replace(base, stages=stages, head_pool=hp, **clip)


def _seed(spec: ArchSpec, overwrite: bool) -> None:
    """Put ``spec``'s fields into the form's session-state keys."""
    spec = form_to_spec(spec_to_form(spec), spec)  # canonical: aliases, neutral hidden fields
    for k, v in spec_to_form(spec).items():
        if overwrite or K + k not in ss:
            ss[K + k] = v
    if overwrite or K + "base" not in ss:
        ss[K + "base"] = spec
        ss[K + "baseline"] = explore.default_baseline(spec)


def _load_preset() -> None:
    ss.pop("bld_upload_error", None)
    ss.pop("bld_upload_note", None)
    ss.pop(K + "loaded_from", None)
    _seed(preset(ss[K + "preset"]), overwrite=True)


def _loaded_elsewhere(what: str) -> None:
    """The design came from a file or the database: the preset box no longer names it."""
    ss[K + "preset"] = None
    ss[K + "loaded_from"] = what


def _load_upload() -> None:
    f = ss.get("builder_upload")
    if f is None:
        return
    name = f.name[:80]
    try:
        if f.size > MAX_JSON_BYTES:
            raise SpecError("", f"more than {MAX_JSON_BYTES:,} bytes of JSON")
        loaded = spec_from_text(f.getvalue(), "upload")
    except SpecError as e:
        ss["bld_upload_error"] = f"{name}: {e}"
        return
    ss.pop("bld_upload_error", None)
    ss["bld_upload_note"] = f"{name}: {loaded.note()}" if loaded.filled else None
    _seed(loaded.spec, overwrite=True)
    _loaded_elsewhere(f"loaded from {name}")


def _load_saved() -> None:
    pick = ss.get("builder_saved")
    spec = _saved_specs().get(pick)
    if spec is not None:
        ss.pop("bld_upload_error", None)
        _seed(spec, overwrite=True)
        _loaded_elsewhere(f"saved architecture {pick}")


def _saved_specs() -> dict[str, ArchSpec]:
    """Architectures saved in the database (empty without jobs/db or on a database error)."""
    api, _ = jobs_api()
    if api is None:
        return {}
    out = {}
    try:
        for a in api.list_architectures():
            try:
                out[a["name"]] = ArchSpec.from_dict(a["spec"]).validate()
            except (SpecError, TypeError, ValueError):
                continue
    except Exception:  # the builder works without a database
        return {}
    return out


def _seed_hidden(base: ArchSpec) -> None:
    """Fields that reappear (groups for -G, pw_groups for -DG, inner for bottlenecks) get a
    sensible value instead of the neutral one they had while hidden."""
    for i, s in enumerate(base.stages):
        b = ss[f"{K}s{i}_block"]
        if b in G_BLOCKS and ss.get(f"{K}s{i}_groups", 1) == 1:
            ss[f"{K}s{i}_groups"] = s.groups if s.groups > 1 else DEFAULT_GROUPS
        if b == "bottleneck-DG" and ss.get(f"{K}s{i}_pw_groups", 1) == 1:
            ss[f"{K}s{i}_pw_groups"] = s.pw_groups if s.pw_groups > 1 else DEFAULT_PW_GROUPS


def form_spec() -> ArchSpec:
    """The ArchSpec the form describes. An edited preset or loaded design gets a new name
    (``ir-csn-26-edited``) unless the user named it."""
    base: ArchSpec = ss[K + "base"]
    vals = {k[len(K):]: v for k, v in ss.items() if isinstance(k, str) and k.startswith(K)}
    spec = form_to_spec(vals, base)
    if (spec.name == base.name and not base.name.endswith("-edited")
            and replace(spec, name=base.name) != base):
        spec = replace(spec, name=f"{base.name}-edited")
        ss[K + "name"] = spec.name
    return spec


# --- state -----------------------------------------------------------------------------------
presets = list_presets()
ss.setdefault(K + "preset", "ir-csn-50")
_seed(load_design() or preset(ss[K + "preset"] or "ir-csn-50"), overwrite=False)  # a fresh session resumes
_seed_hidden(ss[K + "base"])
spec = form_spec()
err: SpecError | None = None
err_at: tuple[int | None, str] = (None, "")
report = None
try:
    report = count(spec)
    if ss.get(BUILDER_SPEC) != spec.to_dict():
        remember_design(spec)
    ss[BUILDER_SPEC] = spec.to_dict()
    ss[LAST_VALID] = (spec, report)
except SpecError as e:
    err, err_at = e, explore.error_field(e, spec)
# an invalid design keeps showing the last valid one's figures, marked stale
shown_spec, shown_report = (spec, report) if report is not None else ss.get(LAST_VALID, (None, None))

UI_WORDS = {"temporal_stride=false": "T-stride off", "temporal_stride": "temporal stride",
            "pw_groups": "pointwise groups", "head_pool": "head pool", "num_classes": "classes",
            "stem_width": "stem width", "_x.inner": "_x inner width", "true, false or null":
            "2, 1 or 'as T-stride'"}


def ui_message(e: SpecError, at: tuple[int | None, str]) -> str:
    """The spec error in the form's words, with the values that would be valid."""
    msg = str(e)
    for api_word, ui_word in UI_WORDS.items():
        msg = msg.replace(api_word, ui_word)
    ok = explore.valid_values(spec, *at)
    if at[1] in ("groups", "pw_groups", "width", "inner") and ok:
        what = STAGE_FORM[at[1]][0]
        msg += f". Valid {what.lower()} here: {', '.join(map(str, ok))}"
    elif at[1] == "clip" and ok:
        msg += ". Valid: " + " or ".join(f"at least {v} {'frames' if f == 'frames' else 'pixels high'}"
                                         for f, v in ok)
        if explore.valid_values(spec, None, "temporal_stride"):
            msg += ", or turn T-stride off"
    return msg


def inline_error(stage: int | None, field: str) -> None:
    """Show the spec error under the field it belongs to."""
    if err is not None and err_at == (stage, field):
        st.error(ui_message(err, err_at), icon=":material/error:")


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

src1, src2, src3 = st.columns([2, 2, 2])
src1.selectbox("Start from preset", presets, key=K + "preset", on_change=_load_preset,
               placeholder=ss.get(K + "loaded_from") or "choose a preset",
               help="Loading a preset resets the form.")
if ss[K + "preset"]:
    src1.caption(describe_preset(ss[K + "preset"]))
saved = _saved_specs()
if saved:
    src1.selectbox("…or a saved architecture", list(saved), index=None, key="builder_saved",
                   on_change=_load_saved, placeholder="choose one")
src2.file_uploader("…or load a spec JSON", type=["json"], key="builder_upload",
                   on_change=_load_upload)
baseline = src3.selectbox("Compare with", presets, key=K + "baseline",
                          help="Deltas are against this preset at the same clip, classes and head.")
if ss.get("bld_upload_error"):
    src2.error(f"Could not load the spec: {ss['bld_upload_error']}")
elif ss.get("bld_upload_note"):
    src2.info(ss["bld_upload_note"])

totals_box = st.container()

st.subheader("Input clip and head")
# the toggles get a row of their own: beside six inputs their labels are cut off at 1400 px
c = st.columns([2, 1, 1, 1, 1, 1]) + st.columns(6)[:3]
for col, field in zip(c, CLIP_FORM):
    widget(col, field, K + field, CLIP_FORM)
if ss[K + "head"] == "conv":
    h = st.columns(6)
    for col, a in zip(h, HEAD_POOL):
        col.number_input(f"Head pool {a}" + (" (0 = none)" if a == "t" else ""), min_value=0,
                         step=1, key=f"{K}head_pool_{a}")
_b = ss[K + "base"]
st.caption(f"Input normalisation (from the loaded spec, 0-1 scale): mean {list(_b.input_mean)}, "
           f"std {list(_b.input_std)}, {_b.input_order}")
if err is not None and err_at[0] is None:
    st.error(ui_message(err, err_at), icon=":material/error:")

st.subheader("Stages")
cols = st.columns(4)
for i, (col, sname) in enumerate(zip(cols, STAGE_NAMES)):
    with col.container(border=True):
        st.markdown(f"**{sname}_x**")
        b = ss[f"{K}s{i}_block"]
        for field in STAGE_FORM:
            if stage_field_shown(i, field, b):
                got = widget(st, field, f"{K}s{i}_{field}", STAGE_FORM)
                b = got if field == "block" else b
            inline_error(i, field)

# --- totals (drawn above the form) -----------------------------------------------------------
with totals_box:
    if report is None:
        st.warning("This design is invalid; fix the field marked below. "
                   + ("The figures are the last valid design's (stale)." if shown_report else ""),
                   icon=":material/warning:")
    if shown_report is not None:
        t = shown_report.totals
        try:
            b = count(explore.baseline_spec(baseline, shown_spec)).totals
        except SpecError:
            b = None
        m = st.columns(5)
        stale = " (stale)" if report is None else ""

        def delta(cur: int, ref: int | None, unit: str) -> str | None:
            if ref is None or cur == ref:
                return None
            return fmt_delta(cur, ref, unit)

        m[0].metric("Parameters" + stale, fmt_count(t.params, ""), delta(t.params, b and b.params, ""),
                    delta_color="inverse",
                    help=f"{UNITS['params']}. Plus {fmt_count(t.bn_params, '')} BN and "
                         f"{fmt_count(t.bias_params, '')} bias parameters.")
        m[1].metric("Multiply-adds" + stale, fmt_count(t.flops, ""),
                    delta(t.flops, b and b.flops, ""), delta_color="inverse",
                    help="The paper's FLOPs. " + UNITS["flops"])
        m[2].metric("torch FLOPs" + stale, fmt_count(t.torch_flops, ""),
                    delta(t.torch_flops, b and b.torch_flops, ""), delta_color="inverse",
                    help="2 per multiply-add: what torch.utils.flop_counter.FlopCounterMode reports.")
        m[3].metric("Interactions" + stale, fmt_count(t.interactions, ""),
                    delta(t.interactions, b and b.interactions, ""), delta_color="off",
                    help="Channel interactions (pairs). " + UNITS["interactions"])
        m[4].metric("Depth" + stale, f"{shown_spec.depth} layers",
                    help="conv1 + block convs + fc (paper naming)")
        st.caption(f"Deltas against {baseline} at the same clip and head. "
                   f"Clip {shown_spec.frames}×{shown_spec.height}×{shown_spec.width}, "
                   f"{shown_spec.num_classes} classes, {shown_spec.head} head. BN adds "
                   f"{fmt_count(t.bn_params, '')} and biases {fmt_count(t.bias_params, '')} "
                   f"parameters (all trainable: {fmt_count(t.all_params, '')}).")

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
    mc = st.columns(3)
    threads = mc[0].radio("CPU threads", [1, 2], horizontal=True, key="measure_threads")
    repeats = mc[1].number_input("Repeats", min_value=1, max_value=10, value=2, key="measure_reps")
    with_base = mc[2].checkbox(f"also time {baseline}", key="measure_base")
    if st.button("Measure", icon=":material/timer:"):
        with st.spinner("Building and timing…"):
            try:
                res = {"spec": spec.to_json(), "cur": explore.measure_forward(
                    spec, threads=threads, repeats=int(repeats))}
                if with_base:
                    res["base"] = explore.measure_forward(explore.baseline_spec(baseline, spec),
                                                          threads=threads, repeats=int(repeats))
                ss["measure_result"] = res
            except (RuntimeError, MemoryError, SpecError) as e:
                st.error(f"Could not run the model: {e}")
    res = ss.get("measure_result")
    if res and res["spec"] == spec.to_json():
        r = st.columns(3)
        r[0].metric("Forward (best)", f"{res['cur']['ms']:.0f} ms",
                    help=f"mean {res['cur']['ms_mean']:.0f} ms, {int(res['cur']['threads'])} thread(s)")
        r[1].metric("Multiply-adds", fmt_count(report.totals.flops, ""))
        if "base" in res:
            r[2].metric(f"{baseline} forward", f"{res['base']['ms']:.0f} ms")
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
        name = st.text_input("Save as (name)", value=spec.name)
        if st.form_submit_button("Save architecture", icon=":material/save:"):
            ok, msg = save_architecture(name.strip() or spec.name, spec)
            (st.success if ok else st.error)(msg)
    st.code(spec.to_json(indent=2), language="json")
