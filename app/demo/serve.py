"""Starting the demo: alone (``python -m app.demo``) or once inside the Streamlit process."""
from __future__ import annotations

import argparse
import os
import socket
import threading
from pathlib import Path

from .models import Registry, default_cache, make_examples
from .ui import RESIZE_JS, build_demo

DEFAULT_PORT = 7860


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
