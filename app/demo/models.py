"""The models the demo offers (shipped, imported, trained here, typed paths) and its example clips."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from backend.paths import check_checkpoint, data_dir

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "backend" / "assets" / "motion_csn.pt"


def default_cache() -> Path:
    return data_dir() / "demo"

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
        from backend.inference.predictor import Predictor

        if self.path != path:
            self.predictor, self.path = None, None
            self.predictor = Predictor(path)
            self.path = path
        return self.predictor


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
