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

Rooms: :mod:`.models` (what is offered), :mod:`.handlers` (what the buttons do), :mod:`.ui`
(the Gradio page), :mod:`.timeline` (long videos), :mod:`.serve` (starting it).
"""
from .handlers import METHOD_NAMES, Handlers, Stopped, explain_settings
from .models import EXAMPLE_SPECS, SHIPPED, ModelEntry, Registry, discover_models, make_examples
from .serve import main, serve, start_in_background
from .ui import RESIZE_JS, build_demo

__all__ = ["EXAMPLE_SPECS", "METHOD_NAMES", "RESIZE_JS", "SHIPPED", "Handlers", "ModelEntry", "Registry",
           "Stopped", "build_demo", "discover_models", "explain_settings", "main", "make_examples", "serve",
           "start_in_background"]
