"""Upload-a-video demo (Gradio 6): top-5 classes, a model card and a Captum explanation.

    python -m app.demo [--host 127.0.0.1] [--port 7860] [--checkpoint PATH ...] [--max-mb 50]

The Streamlit app serves this same demo from its own process (``start_in_background``, once
per process; its Demo page embeds it), so ``python -m app.demo`` is only for running it alone.
Models offered, refreshed on every page load and with the refresh button: the shipped
``backend/assets/motion_csn.pt``, every ``--checkpoint``, checkpoints under ``<data dir>/
models`` (e.g. written by ``python -m backend.convert``), the newest checkpoint of each
finished training run, and a checkpoint typed as a server path inside the model roots
(``backend.paths``). One model is loaded at a time. Prediction and explanation report progress
and stop at the next clip / forward pass when Stop is pressed.
Example clips are generated at startup with ``backend.synth`` in several containers/codecs.
Uploads live in Gradio's temp dir (``GRADIO_TEMP_DIR``, default ``<cache>/uploads``) and are
deleted by ``delete_cache``; rendered outputs are kept for the last few requests only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import demo_timeline
from app.modelcard import model_card_markdown
from backend.paths import PathRefused, check_checkpoint, data_dir

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "backend" / "assets" / "motion_csn.pt"
DEFAULT_PORT = 7860
KEEP_OUTPUTS = 16
# sent to the embedding page (app/views/demo.py) so it can size its iframe to the content. The
# content is measured by its blocks' bottom edge, not by Gradio's container, which stretches to
# the iframe's height (measuring that would feed each new height back into the next).
RESIZE_JS = """<script>
(() => {
  let last = 0;
  const post = () => {
    const blocks = document.querySelectorAll(".gradio-container .contain > *");
    if (!blocks.length || window.parent === window) return;
    let bottom = 0;
    for (const b of blocks) bottom = Math.max(bottom, b.getBoundingClientRect().bottom);
    const footer = document.querySelector(".gradio-container footer");
    const h = Math.ceil(bottom + window.scrollY + (footer ? footer.offsetHeight : 0) + 48);
    if (Math.abs(h - last) > 1) { last = h; window.parent.postMessage({csnDemoHeight: h}, "*"); }
  };
  addEventListener("load", () => { new ResizeObserver(post).observe(document.body); post(); });
  setInterval(post, 1000);
})();
</script>"""


def default_cache() -> Path:
    return data_dir() / "demo"


# --- model registry (one loaded model per process) -----------------------------------------

@dataclass(frozen=True)
class ModelEntry:
    path: str
    origin: str   # for people: "shipped with CSN Explorer", "training run #3 ...", "imported ..."


def _imported_origin(path: Path) -> str:
    return f"imported checkpoint {path.name}"


def discover_models(extra: list[str] | None = None) -> dict[str, ModelEntry]:
    """Display name -> :class:`ModelEntry`, in the order the demo offers them."""
    models: dict[str, ModelEntry] = {}
    if SHIPPED.is_file():
        models["shipped: motion_csn"] = ModelEntry(str(SHIPPED), "shipped with CSN Explorer")
    for p in extra or []:
        models[f"checkpoint: {Path(p).name}"] = ModelEntry(str(Path(p).resolve()),
                                                            f"checkpoint {p} (command line)")
    for p in sorted((data_dir() / "models").glob("*.pt")):
        models[f"imported: {p.name}"] = ModelEntry(str(p), _imported_origin(p))
    try:  # finished training runs (optional: the jobs/db layer may be absent)
        from jobs.api import get_run, list_runs

        for r in list_runs(status="succeeded", limit=20):
            run = get_run(r["id"]) or {}
            cks = [c for c in run.get("checkpoints", []) if Path(c["path"]).is_file()]
            if cks:
                name = r.get("name") or (r.get("spec") or {}).get("name") or ""
                models[f"run {r['id']}: {name} (epoch {cks[-1]['epoch']})"] = ModelEntry(
                    cks[-1]["path"], f"training run #{r['id']} {name}, epoch {cks[-1]['epoch']} "
                                     f"of {r.get('dataset')}")
    except Exception:  # noqa: BLE001 - no DB configured, import errors: just no runs
        pass
    return models


class Registry:
    """The models on offer (re-discovered on refresh) plus those imported by path."""

    def __init__(self, extra: list[str] | None = None) -> None:
        self.extra = list(extra or [])
        self.imported: dict[str, ModelEntry] = {}
        self.models = discover_models(self.extra)

    def refresh(self) -> dict[str, ModelEntry]:
        self.models = {**discover_models(self.extra), **self.imported}
        return self.models

    def import_path(self, typed: str) -> str:
        """Offer a checkpoint typed as a server path; returns its display name. Raises
        PathRefused outside the model roots and FileNotFoundError when it is not a file."""
        p = check_checkpoint(typed)
        if not p.is_file():
            raise FileNotFoundError(f"no checkpoint file at {typed.strip()} (inside the allowed roots)")
        name = f"imported: {p.name}"
        self.imported[name] = ModelEntry(str(p), _imported_origin(p) + " (loaded by path)")
        self.models[name] = self.imported[name]
        return name


class ModelSlot:
    """Holds one Predictor; loading another replaces it (a lock serialises use)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.path: str | None = None
        self.predictor = None

    def get(self, path: str):
        from backend.inference import Predictor

        if self.path != path:
            self.predictor, self.path = None, None
            self.predictor = Predictor(path)
            self.path = path
        return self.predictor


class Stopped(Exception):
    """Raised from a progress callback when the user pressed Stop."""


# --- examples --------------------------------------------------------------------------------

EXAMPLE_SPECS = (("move-left", "mp4"), ("move-up", "webm"), ("rotate-cw", "avi"), ("zoom-in", "mkv"))


def make_examples(cache: Path) -> list[str]:
    """Generate a few labelled synthetic clips (once) in several containers/codecs."""
    from backend.synth import make_scene, render, write_video

    out = cache / "examples"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (label, ext) in enumerate(EXAMPLE_SPECS):
        p = out / f"{label}.{ext}"
        if not p.is_file():
            write_video(p, render(make_scene(label, (7, i), size=112, frames=32)), fps=15)
        paths.append(str(p))
    return paths


# --- request handlers -------------------------------------------------------------------------

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
        from backend.inference import ModelLoadError

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

        from backend.inference import ModelLoadError

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

        from backend.saliency import explain, render, to_frames
        from backend.video import VideoError

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


def build_demo(registry: Registry, *, cache: Path, examples: list[str] | None = None,
               max_clips: int = 10):
    import gradio as gr

    from backend.saliency import STAGES

    import captum.attr  # noqa: F401  (imported now, not on the first request)

    h = Handlers(registry, cache)

    def analyze(file, model_name, num_clips, crops, method_label, stage, request: gr.Request,
                progress=gr.Progress()):
        """Classify an uploaded video and explain the top class."""
        yield from h.analyze(file, model_name, num_clips, crops, method_label, stage, request, progress)

    def stop_analysis(request: gr.Request):
        h.stop(request)

    with gr.Blocks(title="CSN Explorer demo", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# CSN Explorer: classify a video\nUpload a video (mp4, webm, mkv, avi, mov, gif ...) "
                    "or pick a generated example. The model averages its softmax over uniformly "
                    "spaced clips (paper §4.1); the explanation is for the top class on the centre "
                    "clip. Read the model card first: a model knows only its own classes.")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.File(label="Video", file_count="single", type="filepath")
                with gr.Row(equal_height=True):
                    model = gr.Dropdown(list(registry.models), value=next(iter(registry.models), None),
                                        label="Model", scale=5)
                    refresh_btn = gr.Button("↻ Refresh", scale=1, min_width=60, size="sm")
                with gr.Accordion("Load a checkpoint from this server", open=False):
                    ck_path = gr.Textbox(label="Checkpoint path (inside the data roots)",
                                         placeholder="models/ir-csn-152.pt")
                    ck_btn = gr.Button("Load", size="sm")
                    ck_msg = gr.Markdown()
                num_clips = gr.Slider(1, max_clips, value=3, step=1, label="Clips")
                # string choices: Gradio reports a Radio's values as strings in its API (view_api)
                crops = gr.Radio(["1", "3"], value="1", label="Crops per clip")
                method = gr.Dropdown(list(METHOD_NAMES), value="Grad-CAM (stage)", label="Explanation")
                stage = gr.Dropdown(list(STAGES), value="conv4", label="Grad-CAM stage")
                big_note = gr.Markdown()
                with gr.Row():
                    run = gr.Button("Analyze", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[video], label="Generated examples")
            with gr.Column(scale=2):
                label = gr.Label(num_top_classes=5, label="Top-5")
                info = gr.Markdown()
                overlay = gr.Video(label="Clip | explanation overlay", autoplay=True, loop=True)
                gallery = gr.Gallery(label="Key frames (most important)", columns=4, height="auto")
                plot = gr.Plot(label="Per-frame importance")
                timeline_parts = demo_timeline.components()
                with gr.Accordion("Model card", open=True):
                    card_md = gr.Markdown()
        card_out = [card_md, num_clips, method, big_note]
        demo.load(h.refresh, [model], [model, *card_out], api_name="refresh_models")
        refresh_btn.click(h.refresh, [model], [model, *card_out], api_name=False)
        model.input(h.card, [model], card_out, api_name="model_card")
        ck_btn.click(h.import_checkpoint, [ck_path], [model, ck_msg], api_name="load_checkpoint"
                     ).success(h.card, [model], card_out, api_name=False)
        analyzed = run.click(analyze, [video, model, num_clips, crops, method, stage],
                             [label, info, overlay, gallery, plot], api_name="analyze", concurrency_limit=1)
        demo_timeline.wire(h, timeline_parts, analyzed, video, model, method, stage,
                           [overlay, gallery, plot, info])
        stop.click(stop_analysis, None, None, api_name="stop", concurrency_limit=None,
                   concurrency_id="stop")
    return demo


# --- serving -----------------------------------------------------------------------------------

def pick_port(host: str, port: int | None) -> int:
    """``port`` when given (it must be free); else 7860 when free, else any free port."""
    def free(p: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind((host, p))
            except OSError:
                return False
        return True
    if port:
        return port
    if free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve(*, host: str = "127.0.0.1", port: int | None = None, checkpoints: list[str] | None = None,
          cache: Path | None = None, max_mb: float = 50.0, queue: int = 8, examples: bool = True,
          block: bool = True) -> str:
    """Build and launch the demo; returns its URL (``block=False``: serve from a thread)."""
    cache = Path(cache or default_cache()).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(cache / "uploads"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    registry = Registry(checkpoints)
    if not registry.models:  # keep serving (make run stops every process when one exits)
        print("warning: no model yet: train one, ship backend/assets/motion_csn.pt or pass --checkpoint",
              flush=True)
    demo = build_demo(registry, cache=cache, examples=make_examples(cache) if examples else [])
    demo.queue(max_size=queue, default_concurrency_limit=1)
    port = pick_port(host, port)
    demo.launch(server_name=host, server_port=port, max_file_size=int(max_mb * 1024 * 1024),
                allowed_paths=[str(cache)], show_error=True, share=False, head=RESIZE_JS,
                prevent_thread_lock=not block, quiet=not block)
    return f"http://{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.demo", description="CSN Explorer upload demo")
    ap.add_argument("--host", default=os.environ.get("CSN_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("CSN_DEMO_PORT") or DEFAULT_PORT))
    ap.add_argument("--checkpoint", action="append", default=[], help="extra checkpoint(s) to offer")
    ap.add_argument("--cache-dir", default=None, help="default: <data dir>/demo")
    ap.add_argument("--max-mb", type=float, default=50.0, help="upload size limit")
    ap.add_argument("--queue", type=int, default=8, help="max queued requests")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--no-examples", action="store_true")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    serve(host=a.host, port=a.port, checkpoints=a.checkpoint, cache=a.cache_dir, max_mb=a.max_mb,
          queue=a.queue, examples=not a.no_examples)
    return 0


_STARTED: dict[str, str] = {}
_START_LOCK = threading.Lock()


def start_in_background() -> str:
    """Serve the demo from this process (once; later calls return the same URL): what the
    Streamlit app does. Host ``CSN_HOST`` (127.0.0.1), port ``CSN_DEMO_PORT`` or 7860 when free,
    else any free port."""
    with _START_LOCK:
        if "url" not in _STARTED:
            port = int(os.environ["CSN_DEMO_PORT"]) if os.environ.get("CSN_DEMO_PORT") else None
            _STARTED["url"] = serve(host=os.environ.get("CSN_HOST", "127.0.0.1"), port=port,
                                    block=False)
        return _STARTED["url"]


if __name__ == "__main__":
    raise SystemExit(main())
