"""The demo's Gradio page: its components and how they are wired to the handlers."""
from __future__ import annotations

from pathlib import Path

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


def build_demo(registry: Registry, *, cache: Path, examples: list[str] | None = None,
               max_clips: int = 10):
    import gradio as gr

    from backend.inference.saliency import STAGES

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
                timeline_parts = timeline.components()
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
        timeline.wire(h, timeline_parts, analyzed, video, model, method, stage,
                           [overlay, gallery, plot, info])
        stop.click(stop_analysis, None, None, api_name="stop", concurrency_limit=None,
                   concurrency_id="stop")
    return demo
