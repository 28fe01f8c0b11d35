"""Builder: compose an ArchSpec from a preset or a JSON file and see its exact costs live.

The form's widgets hold the spec's fields in ``st.session_state`` (keys ``bld_*``); every run
turns them into one ArchSpec (``dataclasses.replace`` on the loaded spec) and counts it.
"""
from __future__ import annotations

from dataclasses import replace

import streamlit as st

from app import charts
from app.state import (BUILDER_SPEC, FORM_PREFIX as K, fmt_count, fmt_delta, jobs_api,
                       save_architecture)
from backend import explore
from backend.csn import BLOCK_TYPES, UNITS, ArchSpec, SpecError, count, list_presets, preset
from backend.csn.presets import DEFAULT_GROUPS, DEFAULT_PW_GROUPS
from backend.csn.spec import STAGE_NAMES, canonical_block

G_BLOCKS = ("simple-G", "bottleneck-G")
TSTRIDE_CHOICES = {None: "as T-stride", True: "2 (halve T)", False: "1 (keep T)"}
BLOCK_LABELS = {"bottleneck-D": "bottleneck-D (ir-CSN)", "ip": "ip (ip-CSN)"}
ss = st.session_state


# --- spec <-> form ---------------------------------------------------------------------------
def _seed(spec: ArchSpec, overwrite: bool) -> None:
    """Put ``spec``'s fields into the form's session-state keys."""
    vals = {"name": spec.name, "frames": spec.frames, "height": spec.height, "clip_w": spec.width,
            "classes": spec.num_classes, "pool1": spec.pool1, "pool2": spec.pool2,
            "tstride": spec.temporal_stride,
            "head": spec.head, "hp_t": spec.head_pool[0], "hp_h": spec.head_pool[1],
            "hp_w": spec.head_pool[2]}
    for i, s in enumerate(spec.stages):
        vals.update({f"s{i}_block": canonical_block(s.block), f"s{i}_blocks": s.blocks,
                     f"s{i}_width": s.width, f"s{i}_inner": s.inner,
                     f"s{i}_groups": s.groups, f"s{i}_pw_groups": s.pw_groups,
                     f"s{i}_tstride": s.temporal_stride})
    for k, v in vals.items():
        if overwrite or K + k not in ss:
            ss[K + k] = v
    if overwrite or K + "base" not in ss:
        ss[K + "base"] = spec
        ss[K + "baseline"] = explore.default_baseline(spec)


def _load_preset() -> None:
    ss.pop("bld_upload_error", None)
    _seed(preset(ss[K + "preset"]), overwrite=True)


def _load_upload() -> None:
    f = ss.get("builder_upload")
    if f is None:
        return
    try:
        spec = ArchSpec.from_json(f.getvalue().decode("utf-8"))
        spec.validate()
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as e:
        ss["bld_upload_error"] = f"{f.name}: {e}"
        return
    ss.pop("bld_upload_error", None)
    _seed(spec, overwrite=True)


def _load_saved() -> None:
    pick = ss.get("builder_saved")
    spec = _saved_specs().get(pick)
    if spec is not None:
        ss.pop("bld_upload_error", None)
        _seed(spec, overwrite=True)


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
    """The ArchSpec the form describes (hidden fields take their neutral values)."""
    base: ArchSpec = ss[K + "base"]
    stages = []
    for i, s in enumerate(base.stages):
        b = ss[f"{K}s{i}_block"]
        width = int(ss[f"{K}s{i}_width"])
        stages.append(replace(
            s, block=b, blocks=int(ss[f"{K}s{i}_blocks"]), width=width,
            inner=width if b.startswith("simple") else int(ss[f"{K}s{i}_inner"]),
            groups=int(ss[f"{K}s{i}_groups"]) if b in G_BLOCKS else 1,
            pw_groups=int(ss[f"{K}s{i}_pw_groups"]) if b == "bottleneck-DG" else 1,
            temporal_stride=ss.get(f"{K}s{i}_tstride") if i > 0 else None))
    head = ss[K + "head"]
    return replace(base, name=ss[K + "name"] or "custom", stages=stages,
                   frames=int(ss[K + "frames"]), height=int(ss[K + "height"]),
                   width=int(ss[K + "clip_w"]), num_classes=int(ss[K + "classes"]),
                   pool1=bool(ss[K + "pool1"]), pool2=bool(ss.get(K + "pool2", False)),
                   temporal_stride=bool(ss[K + "tstride"]), head=head,
                   head_pool=(int(ss[K + "hp_t"]), int(ss[K + "hp_h"]), int(ss[K + "hp_w"]))
                   if head == "conv" else (0, 0, 0))


# --- state -----------------------------------------------------------------------------------
presets = list_presets()
ss.setdefault(K + "preset", "ir-csn-50")
_seed(preset(ss[K + "preset"]), overwrite=False)
_seed_hidden(ss[K + "base"])
spec = form_spec()
err: SpecError | None = None
err_at: tuple[int | None, str] = (None, "")
report = None
try:
    report = count(spec)
    ss[BUILDER_SPEC] = spec.to_dict()
except SpecError as e:
    err, err_at = e, explore.error_field(e, spec)


def inline_error(stage: int | None, field: str) -> None:
    """Show the spec error under the field it belongs to."""
    if err is not None and err_at == (stage, field):
        st.error(str(err), icon=":material/error:")


# --- page ------------------------------------------------------------------------------------
st.title("Architecture builder")
st.caption("Compose a 3D ResNet or channel-separated network (Tran et al., ICCV 2019) and see "
           "its exact parameters, multiply-adds and channel interactions (paper eq. 1-3).")

src1, src2, src3 = st.columns([2, 2, 2])
src1.selectbox("Start from preset", presets, key=K + "preset", on_change=_load_preset,
               help="Loading a preset resets the form.")
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

totals_box = st.container()

st.subheader("Input clip and head")
c = st.columns([2, 1, 1, 1, 1, 1, 1, 1.2])
c[0].text_input("Name", key=K + "name")
c[1].number_input("Frames T", min_value=1, max_value=512, step=1, key=K + "frames")
c[2].number_input("Height H", min_value=8, max_value=1024, step=8, key=K + "height")
c[3].number_input("Width W", min_value=8, max_value=1024, step=8, key=K + "clip_w")
c[4].number_input("Classes", min_value=1, max_value=100000, step=1, key=K + "classes")
c[5].selectbox("Head", ["fc", "conv"], key=K + "head",
               help="fc: global average pool + Linear; conv: [avg-pool] + 1x1x1 conv classifier")
c[6].toggle("pool1", key=K + "pool1", help="max-pool 1x3x3 stride 1x2x2 after conv1")
c[7].toggle("T-stride", key=K + "tstride", help="Temporal striding: 2x2x2 strides at conv3_1, conv4_1, "
            "conv5_1 (off: 1x2x2)")
if ss[K + "head"] == "conv":
    h = st.columns(6)
    h[0].number_input("Head pool t (0 = none)", min_value=0, step=1, key=K + "hp_t")
    h[1].number_input("Head pool h", min_value=0, step=1, key=K + "hp_h")
    h[2].number_input("Head pool w", min_value=0, step=1, key=K + "hp_w")
p2 = st.columns([1, 4])
p2[0].toggle("pool2", key=K + "pool2", help="max-pool 2x1x1 stride 2x1x1 after conv2_x (mmaction2's with_pool2)")
_b = ss[K + "base"]
p2[1].caption(f"Input normalisation (from the loaded spec, 0-1 scale): mean {list(_b.input_mean)}, "
              f"std {list(_b.input_std)}, {_b.input_order}")
if err is not None and err_at[0] is None:
    st.error(str(err), icon=":material/error:")

st.subheader("Stages")
cols = st.columns(4)
for i, (col, sname) in enumerate(zip(cols, STAGE_NAMES)):
    with col.container(border=True):
        st.markdown(f"**{sname}_x**")
        b = st.selectbox("Block type", BLOCK_TYPES, key=f"{K}s{i}_block",
                         format_func=lambda x: BLOCK_LABELS.get(x, x))
        inline_error(i, "block")
        st.number_input("Blocks", min_value=1, max_value=64, step=1, key=f"{K}s{i}_blocks")
        inline_error(i, "blocks")
        st.number_input("Width (output channels)", min_value=1, max_value=8192, step=1,
                        key=f"{K}s{i}_width")
        inline_error(i, "width")
        if not b.startswith("simple"):
            st.number_input("Inner width (3x3x3 channels)", min_value=1, max_value=8192, step=1,
                            key=f"{K}s{i}_inner")
            inline_error(i, "inner")
        if b in G_BLOCKS:
            st.number_input("Groups (3x3x3)", min_value=1, max_value=8192, step=1,
                            key=f"{K}s{i}_groups")
        inline_error(i, "groups")
        if b == "bottleneck-DG":
            st.number_input("Pointwise groups (1x1x1)", min_value=1, max_value=8192, step=1,
                            key=f"{K}s{i}_pw_groups")
        inline_error(i, "pw_groups")
        if i > 0:
            st.selectbox("Temporal stride", TSTRIDE_CHOICES, key=f"{K}s{i}_tstride",
                         format_func=TSTRIDE_CHOICES.get,
                         help=f"Stride in time of {sname}_1")
        inline_error(i, "temporal_stride")

# --- totals (drawn above the form) -----------------------------------------------------------
with totals_box:
    if report is None:
        st.warning("Totals need a valid architecture; fix the field marked below.",
                   icon=":material/warning:")
    else:
        t = report.totals
        try:
            b = count(explore.baseline_spec(baseline, spec)).totals
        except SpecError:
            b = None
        m = st.columns(5)

        def delta(cur: int, ref: int | None, unit: str) -> str | None:
            if ref is None or cur == ref:
                return None
            return fmt_delta(cur, ref, unit)

        m[0].metric("Parameters", fmt_count(t.params, ""), delta(t.params, b and b.params, ""),
                    delta_color="inverse",
                    help=f"{UNITS['params']}. Plus {fmt_count(t.bn_params, '')} BN and "
                         f"{fmt_count(t.bias_params, '')} bias parameters.")
        m[1].metric("Multiply-adds (paper FLOPs)", fmt_count(t.flops, ""),
                    delta(t.flops, b and b.flops, ""), delta_color="inverse", help=UNITS["flops"])
        m[2].metric("torch FLOPs (2 per MAdd)", fmt_count(t.torch_flops, ""),
                    delta(t.torch_flops, b and b.torch_flops, ""), delta_color="inverse",
                    help="What torch.utils.flop_counter.FlopCounterMode reports.")
        m[3].metric("Channel interactions (pairs)", fmt_count(t.interactions, ""),
                    delta(t.interactions, b and b.interactions, ""), delta_color="off",
                    help=UNITS["interactions"])
        m[4].metric("Depth", f"{spec.depth} layers", help="conv1 + block convs + fc (paper naming)")
        st.caption(f"Deltas against {baseline} at the same clip and head. "
                   f"Clip {spec.frames}×{spec.height}×{spec.width}, {spec.num_classes} classes, "
                   f"{spec.head} head. BN adds {fmt_count(t.bn_params, '')} and biases "
                   f"{fmt_count(t.bias_params, '')} parameters (all trainable: "
                   f"{fmt_count(t.all_params, '')}).")

if report is None:
    st.stop()

# --- detail ----------------------------------------------------------------------------------
tab_layers, tab_stages, tab_paper, tab_measure, tab_export = st.tabs(
    ["Layers", "Per stage", "Among the paper's models", "Measure on this machine", "Export / save"])

with tab_layers:
    st.dataframe(explore.layer_rows(report), hide_index=True, width="stretch", height=420,
                 column_config={
                     "params": st.column_config.NumberColumn("params", format="localized"),
                     "MAdds (M)": st.column_config.NumberColumn("MAdds (M)", format="%.2f"),
                     "interactions": st.column_config.NumberColumn("interactions",
                                                                   format="localized")})

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
