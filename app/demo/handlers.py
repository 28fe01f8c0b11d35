"""What the demo's buttons do: predict, explain, stop, refresh, import; the outputs they render."""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from app.modelcard import model_card_markdown
from backend.paths import PathRefused

from .models import ModelSlot, Registry

KEEP_OUTPUTS = 16


class Stopped(Exception):
    """Raised from a progress callback when the user pressed Stop."""


def _outputs_dir(cache: Path) -> Path:
    root = cache / "outputs"
    root.mkdir(parents=True, exist_ok=True)
    old = sorted(root.iterdir(), key=lambda p: p.stat().st_mtime)
    for p in old[:-KEEP_OUTPUTS]:
        shutil.rmtree(p, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))

def _file_path(f: Any) -> str:
    if f is None:
        return ""
    if isinstance(f, (str, Path)):
        return str(f)
    return str(getattr(f, "name", None) or f.get("path", ""))

def importance_figure(values: list[float], method: str):
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=list(range(len(values))), y=values, marker_color="#d9480f"))
    fig.update_layout(title=f"Per-frame importance ({method})", xaxis_title="frame of the clip",
                      yaxis_title="importance", height=300, margin=dict(l=40, r=10, t=40, b=40))
    return fig


METHOD_NAMES = {"Grad-CAM (stage)": "gradcam", "Saliency": "saliency",
                "Integrated Gradients": "integrated_gradients", "Frame ablation": "frame_ablation"}


def explain_settings(pr) -> dict[str, int]:
    """Captum settings: batches of one and fewer IG steps for a big model on CPU."""
    if pr.big:
        return {"n_steps": 8, "internal_batch_size": 1, "frames_per_eval": 1}
    return {"n_steps": 16, "internal_batch_size": 4, "frames_per_eval": 4}

def defaults_for(pr) -> tuple[int, str, str]:
    """(clips, explanation, note) the form switches to when this model is selected."""
    if pr.big:
        return 1, "Grad-CAM (stage)", (
            f"**Big model** ({pr.totals.flops / 1e9:.0f} G multiply-adds per clip): defaults set to "
            "1 clip and Grad-CAM (one forward and backward pass); Integrated Gradients runs 8 "
            "steps in batches of 1. Each step shows progress; Stop ends it at the next pass.")
    return 3, "Grad-CAM (stage)", ""

def _session(request: Any) -> str:
    return getattr(request, "session_hash", None) or "local"

class Handlers:
    """The demo's request handlers: one loaded model (:class:`ModelSlot`), the registry, and a
    Stop flag per browser session."""

    def __init__(self, registry: Registry, cache: Path) -> None:
        from backend.inference.predictor import ModelLoadError

        self.registry, self.cache, self.slot = registry, cache, ModelSlot()
        self.stops: dict[str, threading.Event] = {}
        first = next(iter(registry.models.values()), None)
        if first is not None:  # load the default model at startup (one model per process)
            try:
                self.slot.get(first.path)
            except ModelLoadError as e:
                print(f"warning: default model not loaded: {e}", flush=True)

    def predictor(self, name: str):
        import gradio as gr

        from backend.inference.predictor import ModelLoadError

        entry = self.registry.models.get(name) or self.registry.refresh().get(name)
        if not self.registry.models:
            raise gr.Error("No model is available yet: train one, or load a checkpoint by path.")
        if entry is None:
            raise gr.Error(f"Unknown model {name!r}: refresh the model list.")
        try:
            return self.slot.get(entry.path), entry
        except ModelLoadError as e:
            raise gr.Error(f"Cannot load the model: {e}") from None

    def card(self, name: str | None):
        """The selected model's card and the form defaults that suit it."""
        import gradio as gr

        if not name:
            return "No model selected.", gr.update(), gr.update(), ""
        with self.slot.lock:
            pr, entry = self.predictor(name)
        clips, method_label, note = defaults_for(pr)
        return model_card_markdown(pr, entry), clips, method_label, note

    def refresh(self, current: str | None):
        import gradio as gr

        names = list(self.registry.refresh())
        value = current if current in names else next(iter(names), None)
        return (gr.update(choices=names, value=value), *self.card(value))

    def import_checkpoint(self, typed: str):
        import gradio as gr

        try:
            name = self.registry.import_path(typed or "")
        except (PathRefused, FileNotFoundError) as e:
            return gr.update(), f"⚠️ {e}"
        return gr.update(choices=list(self.registry.models), value=name), f"Added **{name}**."

    def stop(self, request: Any) -> None:
        ev = self.stops.get(_session(request))
        if ev is not None:
            ev.set()

    def analyze(self, file, model_name, num_clips, crops, method_label, stage, request: Any,
                progress: Any):
        """Classify an uploaded video (top-5 first), then explain the top class."""
        import gradio as gr

        from backend.inference.saliency import explain, render, to_frames
        from backend.data.video import VideoError

        stop = self.stops[_session(request)] = threading.Event()

        def tick(lo: float, hi: float):
            def cb(f: float, text: str) -> None:
                if stop.is_set():
                    raise Stopped
                progress(lo + (hi - lo) * f, desc=text)
            return cb
        path = _file_path(file)
        if not path:
            raise gr.Error("Upload a video first (or pick an example).")
        t0 = time.perf_counter()
        with self.slot.lock:
            pr, _ = self.predictor(model_name)
            try:
                progress(0.0, desc="decoding")
                pred = pr.predict(path, num_clips=int(num_clips), crops=int(crops), topk=5,
                                  progress=tick(0.0, 0.3))
                info = _top5_info(pr, pred, time.perf_counter() - t0)
                yield pred.as_dict(), info + " · explaining…", None, None, None
                x = pr.clips(path, num_clips=1, crops=1)[0]
                e = explain(pr.model, x, METHOD_NAMES.get(method_label, method_label), stage=stage,
                            target=int(pred.probs.argmax()), progress=tick(0.3, 0.95),
                            **explain_settings(pr))
                out = render(to_frames(x, *pr.norm), e, _outputs_dir(self.cache), fps=8)
            except Stopped:
                yield (gr.update(), f"**Stopped** after {time.perf_counter() - t0:.1f} s.",
                       None, None, None)
                return
            except VideoError as err:
                raise gr.Error(str(err)) from None
        yield (pred.as_dict(), info + f" · explanation ({method_label}"
               f"{' on ' + stage if e.stage else ''}) {e.seconds:.2f} s", out["video"],
               out["gallery"], importance_figure(out["frame_importance"], method_label))

def _top5_info(pr, pred, seconds: float) -> str:
    info = (f"**Top-5 in {seconds:.2f} s** ({pred.clips} clip(s): decode {pred.decode_s:.2f} s, "
            f"model {pred.model_s:.2f} s) · model {pr.spec.name}, {pr.frames}x{pr.size}x{pr.size} clips")
    if pr.big:  # what each explanation will cost, from the pass just measured
        one = pred.model_s / max(1, pred.clips)
        info += (f" · one forward pass ≈ {one:.0f} s, so Grad-CAM / saliency ≈ {1.5 * one:.0f} s, "
                 f"Integrated Gradients ≈ {11 * one:.0f} s, frame ablation ≈ "
                 f"{(pr.frames + 1) * one:.0f} s")
    return info
