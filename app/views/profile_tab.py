"""The Builder's "Profile on this machine" tab and its per-layer table (totals, activation memory).

``backend.profile.compare`` runs in a background thread (one at a time per app process), with
progress and a Cancel button (checked after every timed step); results are cached per spec,
device, batch, threads and repeats for the life of the process.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from backend.csn import explore
from backend.csn import ArchSpec, CountReport
from backend.profile.memory import max_batch, memory_model, parse_bytes

MIB = 2**20
MAX_CACHED = 16


class Cancelled(Exception):
    """Raised from the progress callback when the user cancels."""


@dataclass
class Job:
    key: tuple
    progress: float = 0.0
    result: dict | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None


_JOBS: dict[tuple, Job] = {}          # finished (cache) and running jobs of this process
_LOCK = threading.Lock()


def layer_table(report: CountReport) -> list[dict[str, Any]]:
    """The counter's rows with the activation bytes training keeps per clip, and a totals row."""
    rows = explore.layer_rows(report)
    mem = memory_model(report.spec, 1).layers
    for r, m in zip(rows, mem):
        r["activations (MiB/clip)"] = m.activation_bytes / MIB
    t = report.totals
    rows.append({"layer": "total", "stage": "", "kind": "", "c_in": None, "c_out": None,
                 "groups": None, "kernel": "", "stride": "", "output": "", "params": t.params,
                 "MAdds (M)": t.flops / 1e6, "interactions": t.interactions,
                 "activations (MiB/clip)": sum(m.activation_bytes for m in mem) / MIB})
    return rows


def _run(job: Job, spec: ArchSpec, baseline: str, batch: int, threads: int, repeats: int) -> None:
    import torch

    from backend.csn.perf import set_threads
    from backend.profile import ProfileConfig, compare

    def progress(f: float) -> None:
        job.progress = f
        if job.cancel.is_set():
            raise Cancelled()

    old = torch.get_num_threads()
    try:
        res = compare(spec, ProfileConfig(batch=batch, threads=threads, repeats=repeats),
                      baseline, progress=progress)
        job.result = {"baseline": res["baseline"], "ratios": res["ratios"],
                      **{k: res[k].to_dict() for k in ("design", "base", "design_infer", "base_infer")}}
    except Cancelled:
        job.error = "Profile cancelled."
    except (RuntimeError, MemoryError, ValueError) as e:
        job.error = f"could not profile: {str(e).splitlines()[0][:200]}"
    finally:
        set_threads(old)


def start(spec: ArchSpec, baseline: str, batch: int, threads: int, repeats: int) -> Job | str:
    """The job for these settings (cached, running or new), or why none can start now."""
    key = (spec.to_json(), "cpu", batch, threads, repeats, baseline)
    with _LOCK:
        job = _JOBS.get(key)
        if job is not None and job.error is None:
            return job
        if any(not j.done for j in _JOBS.values()):
            return "another profile is running in this app; wait for it or cancel it"
        while len(_JOBS) >= MAX_CACHED:
            _JOBS.pop(next(iter(_JOBS)))
        job = _JOBS[key] = Job(key)
    threading.Thread(target=_run, args=(job, spec, baseline, batch, threads, repeats),
                     daemon=True, name="csn-profile").start()
    return job


def _share_bars(rows: list[dict], key: str, title: str) -> go.Figure:
    fig = go.Figure()
    names = [r[key] for r in rows]
    for share, label in (("flop_share", "FLOPs"), ("time_share", "time"),
                         ("memory_share", "activation memory")):
        fig.add_bar(x=names, y=[100 * r[share] for r in rows], name=label)
    fig.update_layout(title=title, barmode="group", yaxis_title="% of the network",
                      height=380, margin=dict(t=40, b=10), legend=dict(orientation="h"))
    return fig


def _roofline(rep: dict) -> go.Figure:
    r = rep["roof"]
    pts = [x for x in rep["rows"] if x["flops"] and x["attained_gflops"] > 0]
    fig = go.Figure()
    for kind in sorted({x["kind"] for x in pts}):
        sel = [x for x in pts if x["kind"] == kind]
        fig.add_scatter(x=[x["intensity"] for x in sel], y=[x["attained_gflops"] for x in sel],
                        mode="markers", name=kind, text=[x["name"] for x in sel],
                        hovertemplate="%{text}<br>%{x:.1f} FLOP/B, %{y:.1f} GFLOP/s")
    lo = min([x["intensity"] for x in pts] + [r["ridge"] / 10])
    hi = max([x["intensity"] for x in pts] + [r["ridge"] * 10])
    xs = [lo, r["ridge"], hi]
    fig.add_scatter(x=xs, y=[min(r["peak_flops"], x * r["bandwidth"]) / 1e9 for x in xs],
                    mode="lines", name="roof", line=dict(color="black", dash="dash"))
    fig.update_layout(title="Roofline (training step)", xaxis_type="log", yaxis_type="log",
                      xaxis_title="arithmetic intensity (FLOP/byte)", yaxis_title="GFLOP/s",
                      height=420, margin=dict(t=40, b=10))
    return fig


def _batch_line(spec: ArchSpec, budget: int, best: int) -> go.Figure:
    top = max(4, 2 * best)
    xs = list(range(1, top + 1, max(1, top // 64)))
    fig = go.Figure()
    fig.add_scatter(x=xs, y=[memory_model(spec, b).peak_bytes / 2**30 for b in xs],
                    mode="lines", name="predicted training peak")
    fig.add_hline(y=budget / 2**30, line_dash="dash", annotation_text=f"memory: max batch {best}")
    fig.update_layout(title="Predicted training peak (float32, SGD momentum)",
                      xaxis_title="batch", yaxis_title="GiB", height=320, margin=dict(t=40, b=10))
    return fig


def _memory_section(spec: ArchSpec, batch: int) -> None:
    budget_text = st.text_input("Memory to fit", value=f"{_ram() / 1e9:.0f}GB",
                                key="profile_memory", max_chars=20)
    try:
        budget = parse_bytes(budget_text)
    except ValueError as e:
        st.error(str(e))
        return
    mm = memory_model(spec, batch)
    best = max_batch(spec, budget)
    m = st.columns(5)
    m[0].metric("Params + grads", f"{(mm.param_bytes + mm.grad_bytes) / MIB:.1f} MiB")
    m[1].metric("SGD momentum", f"{mm.optimizer_bytes / MIB:.1f} MiB")
    m[2].metric(f"Activations kept (batch {batch})", f"{mm.activation_bytes / MIB:.1f} MiB")
    m[3].metric("Predicted peak", f"{mm.peak_bytes / MIB:.1f} MiB")
    m[4].metric("Largest batch", f"{best}", help=f"largest training batch fitting {budget_text}")
    st.plotly_chart(_batch_line(spec, budget, best), width="stretch")


def _ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _ratio_rows(res: dict) -> list[dict]:
    f = lambda v: None if v is None else round(v, 2)  # noqa: E731
    return [{"stage": r["stage"], "MAC ratio": f(r["flops_ratio"]),
             "train time ratio": f(r["train_time_ratio"]),
             "inference time ratio": f(r["infer_time_ratio"]),
             "memory ratio": f(r["memory_ratio"])} for r in res["ratios"]]


def _show_result(res: dict) -> None:
    rep = res["design"]
    t = rep["totals"]
    st.success(f"Train step {t['step_ms']:.1f} ms; rows sum to {t['layers_ms']:.1f} ms, loss / "
               f"optimizer {t['other_ms']:.1f} ms (unattributed {100 * t['gap']:+.1f}%); "
               f"profiler overhead {100 * t['overhead']:+.1f}%")
    for w in rep["warnings"]:
        st.warning(w)
    st.plotly_chart(_share_bars(rep["stages"], "stage", "Share per stage"), width="stretch")
    st.plotly_chart(_share_bars(rep["rows"], "name", "Share per layer"), width="stretch")
    st.plotly_chart(_roofline(rep), width="stretch")
    st.markdown(f"**{res['baseline']} / {rep['spec_name']}** (> 1: the design is cheaper)")
    st.dataframe(_ratio_rows(res), hide_index=True, key="profile_ratios")
    st.dataframe([{k: x[k] for k in ("name", "kind", "fwd_ms", "bwd_ms", "time_share",
                                     "flop_share", "activation_bytes", "intensity",
                                     "attained_gflops", "bound")} for x in rep["rows"]],
                 hide_index=True, key="profile_rows")


@st.fragment(run_every=1.0)
def _progress(key: tuple) -> None:
    job = _JOBS.get(key)
    if job is None or job.done:
        st.rerun()
    st.progress(job.progress, text=f"Profiling… {100 * job.progress:.0f}%")
    if st.button("Cancel", key="profile_cancel", icon=":material/stop:"):
        job.cancel.set()


def render(spec: ArchSpec, baseline: str) -> None:
    """The tab's body for the current design."""
    st.write("Time every layer's forward and backward pass in a real training step on this "
             f"machine (CPU, float32, channels_last_3d) at the clip above, beside its FLOPs and "
             f"the activation memory it keeps; the same against {baseline}.")
    c = st.columns(3)
    batch = int(c[0].number_input("Batch", min_value=1, max_value=256, value=2, key="profile_batch"))
    threads = int(c[1].radio("CPU threads", [1, 2], horizontal=True, key="profile_threads"))
    repeats = int(c[2].number_input("Repeats", min_value=1, max_value=10, value=2,
                                    key="profile_repeats"))
    _memory_section(spec, batch)
    key = (spec.to_json(), "cpu", batch, threads, repeats, baseline)
    if st.button("Profile on this machine", icon=":material/speed:", key="profile_run"):
        need = memory_model(spec, batch).peak_bytes
        got = (start(spec, baseline, batch, threads, repeats) if need <= _ram() // 2 else
               f"the predicted training peak ({need / 1e9:.1f} GB) is more than half this "
               "machine's memory; lower the batch or the clip")
        if isinstance(got, str):
            st.error(got)
    job = _JOBS.get(key)
    if job is None:
        return
    if not job.done:
        _progress(key)
    elif job.error:
        st.error(job.error)
    else:
        _show_result(job.result)
