"""The demo's Gradio page: its components and how they are wired to the handlers."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from . import timeline
from .handlers import METHOD_NAMES, Handlers
from .models import Registry

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


INTRO = ("# CSN Explorer: classify a video\nUpload a video (mp4, webm, mkv, avi, mov, gif ...) "
         "or pick a generated example. The model averages its softmax over uniformly "
         "spaced clips (paper §4.1); the explanation is for the top class on the centre "
         "clip. Read the model card first: a model knows only its own classes.")


def build_demo(registry: Registry, *, cache: Path, examples: list[str] | None = None,
               max_clips: int = 10):
    """The demo's Blocks: the video and settings on the left, the results on the right."""
    import gradio as gr

    import captum.attr  # noqa: F401  (imported now, not on the first request)

    with gr.Blocks(title="CSN Explorer demo", delete_cache=(600, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                inputs = _input_column(gr, registry, examples, max_clips)
            with gr.Column(scale=2):
                outputs = _output_column(gr)
        _wire(gr, demo, Handlers(registry, cache), inputs, outputs)
    return demo


def _input_column(gr, registry: Registry, examples: list[str] | None,
                  max_clips: int) -> SimpleNamespace:
    """The video, the model (with refresh and loading a server checkpoint) and the settings."""
    from backend.inference.saliency import STAGES

    ui = SimpleNamespace()
    ui.video = gr.File(label="Video", file_count="single", type="filepath")
    with gr.Row(equal_height=True):
        ui.model = gr.Dropdown(list(registry.models), value=next(iter(registry.models), None),
                               label="Model", scale=5)
        ui.refresh_btn = gr.Button("↻ Refresh", scale=1, min_width=60, size="sm")
    with gr.Accordion("Load a checkpoint from this server", open=False):
        ui.ck_path = gr.Textbox(label="Checkpoint path (inside the data roots)",
                                placeholder="models/ir-csn-152.pt")
        ui.ck_btn = gr.Button("Load", size="sm")
        ui.ck_msg = gr.Markdown()
    ui.num_clips = gr.Slider(1, max_clips, value=3, step=1, label="Clips")
    # string choices: Gradio reports a Radio's values as strings in its API (view_api)
    ui.crops = gr.Radio(["1", "3"], value="1", label="Crops per clip")
    ui.method = gr.Dropdown(list(METHOD_NAMES), value="Grad-CAM (stage)", label="Explanation")
    ui.stage = gr.Dropdown(list(STAGES), value="conv4", label="Grad-CAM stage")
    ui.big_note = gr.Markdown()
    with gr.Row():
        ui.run = gr.Button("Analyze", variant="primary")
        ui.stop = gr.Button("Stop", variant="stop")
    if examples:
        gr.Examples(examples=[[p] for p in examples], inputs=[ui.video], label="Generated examples")
    return ui


def _output_column(gr) -> SimpleNamespace:
    """Top-5, the explanation (overlay, key frames, per-frame plot, timeline) and the card."""
    ui = SimpleNamespace()
    ui.label = gr.Label(num_top_classes=5, label="Top-5")
    ui.info = gr.Markdown()
    ui.overlay = gr.Video(label="Clip | explanation overlay", autoplay=True, loop=True)
    ui.gallery = gr.Gallery(label="Key frames (most important)", columns=4, height="auto")
    ui.plot = gr.Plot(label="Per-frame importance")
    ui.timeline_parts = timeline.components()
    with gr.Accordion("Model card", open=True):
        ui.card_md = gr.Markdown()
    return ui


def _wire(gr, demo, h: Handlers, inp: SimpleNamespace, out: SimpleNamespace) -> None:
    """The events, each with the API name the demo's clients call."""
    def analyze(file, model_name, num_clips, crops, method_label, stage, request: gr.Request,
                progress=gr.Progress()):
        """Classify an uploaded video and explain the top class."""
        yield from h.analyze(file, model_name, num_clips, crops, method_label, stage, request, progress)

    def stop_analysis(request: gr.Request):
        h.stop(request)

    card_out = [out.card_md, inp.num_clips, inp.method, inp.big_note]
    demo.load(h.refresh, [inp.model], [inp.model, *card_out], api_name="refresh_models")
    inp.refresh_btn.click(h.refresh, [inp.model], [inp.model, *card_out], api_name=False)
    inp.model.input(h.card, [inp.model], card_out, api_name="model_card")
    inp.ck_btn.click(h.import_checkpoint, [inp.ck_path], [inp.model, inp.ck_msg],
                     api_name="load_checkpoint").success(h.card, [inp.model], card_out, api_name=False)
    analyzed = inp.run.click(analyze, [inp.video, inp.model, inp.num_clips, inp.crops, inp.method,
                                       inp.stage],
                             [out.label, out.info, out.overlay, out.gallery, out.plot],
                             api_name="analyze", concurrency_limit=1)
    timeline.wire(h, out.timeline_parts, analyzed, inp.video, inp.model, inp.method, inp.stage,
                  [out.overlay, out.gallery, out.plot, out.info])
    inp.stop.click(stop_analysis, None, None, api_name="stop", concurrency_limit=None,
                   concurrency_id="stop")
