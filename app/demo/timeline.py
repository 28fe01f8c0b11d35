"""The demo's timeline: class probabilities window by window for a video longer than one
window (``backend.predict``), and an explanation of a chosen window's clip."""
from __future__ import annotations

import threading
from typing import Any

TOP_CLASSES = 5   # curves drawn: the classes with the highest peak probability
MAX_WINDOWS = 120  # a longer video gets a longer stride (the note says so)


def settings(pr, video: str) -> tuple[float, float]:
    """(window, stride) seconds for this video: 2 s, or the model's clip at the video's frame
    rate if longer; windows overlap by half, or less when that would exceed MAX_WINDOWS."""
    from backend.data.video import clip_span_s, probe
    info = probe(video)
    window = max(2.0, round(clip_span_s(pr.frames, pr.rate, info.fps), 2))
    return window, max(window / 2, (info.duration_s - window) / (MAX_WINDOWS - 1))


def figure(tl):
    """Plotly lines: probability of the top classes against each window's centre time."""
    import plotly.graph_objects as go

    centres = [(s + e) / 2 for s, e in zip(tl.starts, tl.ends())]
    peaks = tl.probs.max(0).values.argsort(descending=True)[:TOP_CLASSES].tolist()
    fig = go.Figure([go.Scatter(x=centres, y=tl.probs[:, i].tolist(), mode="lines+markers",
                                name=tl.classes[i]) for i in peaks])
    fig.update_layout(title=f"Class probability over time ({tl.window_s:g} s windows every "
                            f"{tl.stride_s:g} s)", xaxis_title="time (s, window centre)",
                      yaxis_title="probability", yaxis_range=[0, 1], height=320,
                      margin=dict(l=40, r=10, t=40, b=40))
    return fig


def timeline(h, file, model_name: str, progress=None):
    """(figure or None, note, window choices update) for the uploaded video; ``progress(f,
    text)`` after each batch (it may raise to stop)."""
    import gradio as gr

    from .handlers import _file_path
    from backend.predict import timeline as run_timeline
    from backend.data.video import VideoError

    path = _file_path(file)
    if not path:
        return None, "", gr.update(choices=[], value=None)
    with h.slot.lock:
        pr, _ = h.predictor(model_name)
        try:
            window, stride = settings(pr, path)
            tl = run_timeline(pr, path, window=window, stride=stride, progress=progress)
        except (VideoError, ValueError) as e:
            return None, f"No timeline: {e}", gr.update(choices=[], value=None)
    if len(tl.starts) < 2:
        return None, (f"The video ({tl.duration_s:.1f} s) fits in one {window:g} s window: "
                      "no timeline."), gr.update(choices=[], value=None)
    choices = [(f"{s:.1f}–{e:.1f} s: {top[0][0]} {top[0][1]:.0%}", s)
               for s, e, top in zip(tl.starts, tl.ends(), tl.top(1))]
    note = (f"{len(tl.starts)} windows, {tl.frames_decoded} frames decoded once"
            + "".join(f" · ⚠️ {w}" for w in tl.warnings))
    return figure(tl), note, gr.update(choices=choices, value=choices[0][1])


def explain_window(h, file, model_name: str, start_s, method_label: str, stage: str):
    """(overlay video, key frames, per-frame chart, note) explaining the window's centre clip
    for its top class."""
    import gradio as gr

    from .handlers import METHOD_NAMES, _file_path, _outputs_dir, explain_settings, importance_figure
    from backend.inference.saliency import explain, render, to_frames
    from backend.data.video import VideoError, VideoReader, sample_clip_times

    path = _file_path(file)
    if not path or start_s is None:
        raise gr.Error("Analyze a video longer than one window first, then pick a window.")
    with h.slot.lock:
        pr, _ = h.predictor(model_name)
        try:
            window, _ = settings(pr, path)
            with VideoReader(path) as r:
                (offset,) = sample_clip_times(min(window, r.duration), r.fps, frames=pr.frames,
                                              rate=pr.rate)
                x = pr.transform().load(r, float(start_s) + offset, pr.frames, pr.rate)[0]
        except VideoError as e:
            raise gr.Error(str(e)) from None
        target = int(pr.probs(x[None])[0].argmax())
        e = explain(pr.model, x, METHOD_NAMES.get(method_label, method_label), stage=stage,
                    target=target, **explain_settings(pr))
        out = render(to_frames(x, *pr.norm), e, _outputs_dir(h.cache), fps=8)
    note = (f"Window from {float(start_s):.1f} s: {method_label} for **{pr.classes[target]}** "
            f"on its centre clip ({e.seconds:.2f} s)")
    return out["video"], out["gallery"], importance_figure(out["frame_importance"], method_label), note


def components() -> dict[str, Any]:
    """The timeline's widgets, placed where this is called inside the demo's layout."""
    import gradio as gr

    with gr.Accordion("Timeline (videos longer than one window)", open=True):
        parts = {"plot": gr.Plot(label="Class probability over time"), "note": gr.Markdown(),
                 "window": gr.Dropdown([], label="Window to explain"),
                 "explain": gr.Button("Explain this window", size="sm")}
    return parts


def wire(h, parts: dict[str, Any], analyzed, video, model, method, stage, outputs: list) -> None:
    """After each analysis, the timeline; the button explains the chosen window into
    ``outputs`` (overlay, gallery, per-frame chart, info)."""
    import gradio as gr

    from .handlers import Stopped, _session

    def make(file, model_name, request: gr.Request, progress=gr.Progress()):
        stop = h.stops.setdefault(_session(request), threading.Event())

        def tick(f: float, text: str) -> None:
            if stop.is_set():
                raise Stopped
            progress(f, desc=f"timeline: {text}")
        try:
            return timeline(h, file, model_name, progress=tick)
        except Stopped:
            return None, "Timeline stopped.", gr.update(choices=[], value=None)

    def explain_chosen(file, model_name, start_s, method_label, stage_name):
        return explain_window(h, file, model_name, start_s, method_label, stage_name)

    analyzed.success(make, [video, model], [parts["plot"], parts["note"], parts["window"]],
                     api_name="timeline")
    parts["explain"].click(explain_chosen, [video, model, parts["window"], method, stage], outputs,
                           api_name="explain_window", concurrency_limit=1)
