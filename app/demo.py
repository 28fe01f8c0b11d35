"""Upload-a-video demo (Gradio 6): top-5 classes and a Captum explanation.

    python -m app.demo [--host 127.0.0.1] [--port 7860] [--checkpoint PATH ...] [--max-mb 50]

Models offered: the shipped ``backend/assets/motion_csn.pt``, every ``--checkpoint`` (e.g. one
written by ``python -m backend.convert``) and, when the jobs/db packages are importable, the
newest checkpoint of each finished training run. One model is loaded at a time.
Example clips are generated at startup with ``backend.synth`` in several containers/codecs.
Uploads live in Gradio's temp dir (``GRADIO_TEMP_DIR``, default ``<cache>/uploads``) and are
deleted by ``delete_cache``; rendered outputs are kept for the last few requests only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "backend" / "assets" / "motion_csn.pt"
DEFAULT_CACHE = Path(os.environ.get("CSN_DATA_DIR", ROOT / "var")) / "demo"
KEEP_OUTPUTS = 16


# --- model registry (one loaded model per process) -----------------------------------------

def discover_models(extra: list[str] | None = None) -> dict[str, str]:
    """Display name -> checkpoint path."""
    models: dict[str, str] = {}
    if SHIPPED.is_file():
        models["shipped: motion_csn"] = str(SHIPPED)
    for p in extra or []:
        models[f"checkpoint: {Path(p).name}"] = str(Path(p).resolve())
    try:  # finished training runs (optional: the jobs/db layer may be absent)
        from jobs.api import get_run, list_runs

        for r in list_runs(status="succeeded", limit=20):
            run = get_run(r["id"]) or {}
            cks = [c for c in run.get("checkpoints", []) if Path(c["path"]).is_file()]
            if cks:
                models[f"run {r['id']}: {r.get('name') or ''} (epoch {cks[-1]['epoch']})".strip()] = cks[-1]["path"]
    except Exception:  # noqa: BLE001 - no DB configured, import errors: just no runs
        pass
    return models


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


def build_demo(models: dict[str, str], *, cache: Path, examples: list[str] | None = None,
               max_clips: int = 10):
    import gradio as gr

    from backend.inference import ModelLoadError
    from backend.saliency import METHODS, STAGES, explain, render, to_frames
    from backend.video import VideoError

    import captum.attr  # noqa: F401  (imported now, not on the first request)

    slot = ModelSlot()
    if models:  # load the default model at startup (one model per process)
        try:
            slot.get(next(iter(models.values())))
        except ModelLoadError as e:
            print(f"warning: default model not loaded: {e}", flush=True)
    method_names = {"Grad-CAM (stage)": "gradcam", "Saliency": "saliency",
                    "Integrated Gradients": "integrated_gradients", "Frame ablation": "frame_ablation"}
    assert set(method_names.values()) == set(METHODS)

    def _predictor(model_name: str):
        if not models:
            raise gr.Error("No model is available yet: train one, or start the demo with --checkpoint.")
        if model_name not in models:
            raise gr.Error(f"Unknown model {model_name!r}.")
        try:
            return slot.get(models[model_name])
        except ModelLoadError as e:
            raise gr.Error(f"Cannot load the model: {e}") from None

    def _clip(pr, path: str, num_clips: int, crops: int):
        if not path:
            raise gr.Error("Upload a video first (or pick an example).")
        try:
            pred = pr.predict(path, num_clips=int(num_clips), crops=int(crops), topk=5)
            x = pr.clips(path, num_clips=1, crops=1)[0]
        except VideoError as e:
            raise gr.Error(str(e)) from None
        return pred, x

    def _explain(pr, x, method_label: str, stage: str, progress) -> tuple[Any, ...]:
        method = method_names.get(method_label, method_label)
        e = explain(pr.model, x, method, stage=stage, n_steps=16, internal_batch_size=4,
                    progress=lambda f, t: progress(f, desc=t))
        out = render(to_frames(x, *pr.norm), e, _outputs_dir(cache), fps=8)
        return e, out

    def analyze(file, model_name, num_clips, crops, method_label, stage, progress=gr.Progress()):
        """Classify an uploaded video and explain the top class."""
        t0 = time.perf_counter()
        with slot.lock:
            pr = _predictor(model_name)
            progress(0.05, desc="decoding and classifying")
            pred, x = _clip(pr, _file_path(file), num_clips, crops)
            t_pred = time.perf_counter() - t0
            e, out = _explain(pr, x, method_label, stage, progress)
        info = (f"**Top-5 in {t_pred:.2f} s** ({pred.clips} clip(s): decode {pred.decode_s:.2f} s, "
                f"model {pred.model_s:.2f} s) · explanation ({method_label}"
                f"{' on ' + stage if e.stage else ''}) {e.seconds:.2f} s · model {pr.spec.name}, "
                f"{pr.frames}x{pr.size}x{pr.size} clips")
        return (pred.as_dict(), info, out["video"], out["gallery"],
                importance_figure(out["frame_importance"], method_label))

    with gr.Blocks(title="CSN Explorer demo", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# CSN Explorer: classify a video\nUpload a video (mp4, webm, mkv, avi, mov, gif ...) "
                    "or pick a generated example. The model averages its softmax over uniformly "
                    "spaced clips (paper §4.1); the explanation is for the top class on the centre clip.")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.File(label="Video", file_count="single", type="filepath")
                model = gr.Dropdown(list(models), value=next(iter(models), None), label="Model")
                num_clips = gr.Slider(1, max_clips, value=3, step=1, label="Clips")
                crops = gr.Radio([1, 3], value=1, label="Crops per clip")
                method = gr.Dropdown(list(method_names), value="Grad-CAM (stage)", label="Explanation")
                stage = gr.Dropdown(list(STAGES), value="conv4", label="Grad-CAM stage")
                run = gr.Button("Analyze", variant="primary")
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[video], label="Generated examples")
            with gr.Column(scale=2):
                label = gr.Label(num_top_classes=5, label="Top-5")
                info = gr.Markdown()
                overlay = gr.Video(label="Clip | explanation overlay", autoplay=True, loop=True)
                gallery = gr.Gallery(label="Key frames (most important)", columns=4, height="auto")
                plot = gr.Plot(label="Per-frame importance")
        run.click(analyze, [video, model, num_clips, crops, method, stage],
                  [label, info, overlay, gallery, plot], api_name="analyze", concurrency_limit=1)
    return demo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.demo", description="CSN Explorer upload demo")
    ap.add_argument("--host", default=os.environ.get("CSN_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("CSN_DEMO_PORT", 7860)))
    ap.add_argument("--checkpoint", action="append", default=[], help="extra checkpoint(s) to offer")
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    ap.add_argument("--max-mb", type=float, default=50.0, help="upload size limit")
    ap.add_argument("--queue", type=int, default=8, help="max queued requests")
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--no-examples", action="store_true")
    a = ap.parse_args(argv)
    cache = Path(a.cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(cache / "uploads"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(a.threads)
    models = discover_models(a.checkpoint)
    if not models:  # keep serving (make run stops every process when one exits)
        print("warning: no model yet: train one, ship backend/assets/motion_csn.pt or pass --checkpoint",
              flush=True)
    examples = [] if a.no_examples else make_examples(cache)
    demo = build_demo(models, cache=cache, examples=examples)
    demo.queue(max_size=a.queue, default_concurrency_limit=1)
    demo.launch(server_name=a.host, server_port=a.port, max_file_size=int(a.max_mb * 1024 * 1024),
                allowed_paths=[str(cache)], show_error=True, share=False, prevent_thread_lock=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
