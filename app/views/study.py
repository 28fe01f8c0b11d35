"""Study: the paper's ablations as one group of queued runs, read back as its table and figures."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.dataset_view import checked_dataset
from app.formatting import fmt_count
from app.queue_access import require_jobs_api
from backend.csn import SpecError, list_presets
from backend.study import RECIPES, TEMPLATES, plan
from backend.training.progress import prediction_text
from backend.training.report import (COLUMNS, PAIR_COLUMNS, PAPER_NOTE, RUN_COLUMNS, STATS_NOTE,
                                  display_rows, doc_from_runs, figure_bytes, figures, paired_rows,
                                  run_rows, table_csv, table_markdown, table_rows)

ss = st.session_state
st.title("Study")
api = require_jobs_api("Studies")
st.caption("A study is a named group of runs: a template (the paper's Table 2, Figures 6/7, or "
           "a grid over any spec field) trained with one shared recipe on one dataset. Its "
           "results read like the paper. `python -m backend.study` does the same from a shell.")

# --- plan ------------------------------------------------------------------------------------
with st.expander("New study", expanded=not api.list_studies()):
    c = st.columns(4)
    template = c[0].selectbox("Template", list(TEMPLATES), key="st_template")
    recipe = c[1].selectbox("Recipe", list(RECIPES), key="st_recipe",
                            index=list(RECIPES).index("quick"),
                            help="quick: measured to learn the motion data in minutes on 2 CPU "
                                 "cores (README, Studies); tiny: a seconds-long smoke test; paper: §4.1")
    seeds_text = c[2].text_input("Seeds", "0", key="st_seeds", help="comma-separated", max_chars=400)
    width = c[3].number_input("conv2 width", 2, 64, 16, key="st_width",
                              help="every stage scaled so that conv2's 3x3x3 conv has this many "
                                   "channels (paper: 64)")
    args: dict = {}
    if template == "table2":
        args["depth"] = st.selectbox("Depth", [26, 50, 101, 152], key="st_depth")
    elif template in ("fig67", "fig67-quick"):
        g = st.columns(2)
        if template == "fig67":
            args["blocks"] = g[0].selectbox("Blocks", [8, 16], key="st_blocks")
        args["groups"] = tuple(int(v) for v in g[1].text_input("Groups sweep", "2,4,8",
                                                               key="st_groups", max_chars=200).split(",")
                                if v.strip())
    elif template == "grid":
        g = st.columns(3)
        presets = list_presets()
        args["base"] = g[0].selectbox("Base preset", presets, index=presets.index("ir-csn-26"),
                                      key="st_base")
        args["field_"] = g[1].text_input("Field = values", "groups=1,2,4", key="st_field", max_chars=400)
        stage = g[2].selectbox("Stage", ["all", 0, 1, 2, 3], key="st_stage")
        args["stage"] = None if stage == "all" else stage
    typed = st.text_input("Dataset folder", key="st_data",
                          placeholder="e.g. datasets/study (python -m backend.synth --out "
                                      "var/datasets/study --per-class 180 --size 32 --difficulty easy "
                                      "--splits train=0.5,val=0.5)",
                          help="inside the data roots (CSN_DATA_ROOTS); relative paths start at "
                               "the first one")
    name = st.text_input("Study name (optional)", key="st_name")
    try:
        seeds = [int(v) for v in seeds_text.split(",") if v.strip()] or [0]
        study = plan(template, seeds=seeds, recipe=recipe,
                     width=None if template.endswith("-quick") else int(width),
                     name=name.strip() or None, **args)
    except (SpecError, ValueError) as e:
        st.error(f"Cannot plan this study: {e}")
        study = None
    if study is not None:
        st.dataframe([{"run": r.key, "family": r.family, "params": fmt_count(r.costs["params"]),
                       "MAdds": fmt_count(r.costs["flops"]),
                       "interactions": fmt_count(r.costs["interactions"])} for r in study.runs],
                     hide_index=True, width="stretch")
        st.caption(f"{len(study.runs)} runs; recipe {study.recipe_name}: {study.recipe}")
    dataset, ok = checked_dataset(typed, require="classes.txt")
    planned = (dataset, str(study.recipe), [r.key for r in study.runs]) if study else None
    if study is not None and ok and st.button("Predict wall time", icon=":material/timer:",
                                              help="times a few train steps of each model here"):
        ss["st_prediction"] = (planned, prediction_text(study, dataset))
    if ss.get("st_prediction") and ss["st_prediction"][0] == planned:   # not a stale plan's
        st.info(ss["st_prediction"][1], icon=":material/timer:")
    if st.button("Launch study", type="primary", icon=":material/rocket_launch:",
                 disabled=study is None or not ok):
        try:
            classes = (Path(dataset) / "classes.txt").read_text().split()
            study = plan(template, seeds=seeds, recipe=recipe, num_classes=len(classes),
                         width=None if template.endswith("-quick") else int(width),
                         name=name.strip() or None, **args)
            ss["study_id"] = api.enqueue_study(study.to_dict(), dataset)
        except Exception as e:  # queue or database trouble: say so inline
            st.error(f"Could not launch: {e}")
        else:
            st.success(f"Launched study #{ss['study_id']} ({len(study.runs)} runs).")

# --- results ---------------------------------------------------------------------------------
studies = api.list_studies()
if not studies:
    st.info("No studies yet.")
    st.stop()
labels = {s["id"]: f"#{s['id']} {s['name']} ({s['template']}, {s['runs']} runs)" for s in studies}
ids = list(labels)
sid = st.selectbox("Study", ids, format_func=labels.get, key="st_pick",
                   index=ids.index(ss["study_id"]) if ss.get("study_id") in ids else 0)


@st.cache_data(max_entries=16, show_spinner=False)
def _render(doc: dict, rows: list, fig5: tuple[str, ...]) -> dict[str, tuple[bytes, bytes]]:
    """PNG and SVG bytes of each figure (cached: the fragment refreshes every few seconds)."""
    return {name: (figure_bytes(make(), "png"), figure_bytes(make(), "svg"))
            for name, make in figures(doc, rows, fig5_keys=list(fig5)).items()}


_live = any(r["status"] in ("queued", "running") for r in api.get_study(sid)["runs"])


@st.fragment(run_every=3 if _live else None)
def results(sid: int) -> None:
    s = api.get_study(sid)
    runs = s["runs"]
    active = [r for r in runs if r["status"] in ("queued", "running")]
    counts = {k: sum(r["status"] == k for r in runs) for k in dict.fromkeys(r["status"] for r in runs)}
    st.progress(sum(r["progress"] for r in runs) / max(len(runs), 1),
                text=", ".join(f"{n} {k}" for k, n in counts.items()))
    if active and st.button("Cancel study", icon=":material/stop:", key=f"cancel_{sid}"):
        st.toast(f"Cancelled {api.cancel_study(sid)} run(s).")
    if not active and _live:
        st.rerun()  # the study finished: one full rerun stops the refresh
    metrics = {r["id"]: api.get_metrics(r["id"], event="epoch") for r in runs}
    doc = doc_from_runs(s["plan"], runs, metrics)
    rows = table_rows(doc)
    st.subheader("Table 2 layout")
    st.table(display_rows(rows, COLUMNS))     # strings: one type per column, "—" = cannot say
    st.caption(STATS_NOTE + "." + (" " + PAPER_NOTE + "." if any("paper flops" in r for r in rows)
                                   else ""))
    with st.expander("Runs (Wilson 95 %) and paired differences"):
        st.table(display_rows(run_rows(doc), RUN_COLUMNS))
        st.table(display_rows(paired_rows(rows), PAIR_COLUMNS))
    d = st.columns(2)
    d[0].download_button("Table as CSV", table_csv(rows), f"{s['name']}.csv", "text/csv")
    d[1].download_button("Table as Markdown", table_markdown(rows, doc), f"{s['name']}.md",
                         "text/markdown")
    done = [r["key"] for r in doc["results"] if r["history"]["train_error"]]
    pick = st.multiselect("Figure 5 runs (two)", done, default=done[:2], max_selections=2,
                          key=f"fig5_{sid}")
    cols = st.columns(2)
    for i, (fname, (png, svg)) in enumerate(_render(doc, rows, tuple(pick)).items()):
        with cols[i % 2]:
            st.image(png, caption=fname)
            e = st.columns(2)
            e[0].download_button("PNG", png, f"{s['name']}-{fname}.png", "image/png",
                                 key=f"png_{fname}")
            e[1].download_button("SVG", svg, f"{s['name']}-{fname}.svg", "image/svg+xml",
                                 key=f"svg_{fname}")
    failed = [r for r in runs if r["status"] in ("failed", "crashed")]
    for r in failed:
        st.error(f"{r['key']} (run #{r['id']}) {r['status']}: {r.get('error') or ''}")


results(sid)
