"""The demo's model card: what the selected model knows, how it was made, what it cannot do."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.formatting import fmt_count

SHOW_CLASSES = 16


def _release(path: Path) -> dict[str, Any]:
    """The release facts written beside a shipped checkpoint (``motion_csn.json``), if any."""
    meta = path.with_suffix(".json")
    try:
        return json.loads(meta.read_text()) if meta.is_file() else {}
    except (OSError, ValueError):
        return {}


def _pct(v: Any) -> str:
    return f"{float(v) * 100:.1f} %"


def _training(pr, release: dict[str, Any]) -> list[str]:
    """Lines on the training data and the accuracy measured on data the model did not train on."""
    cfg, metrics = pr.info["config"], pr.info["metrics"]
    if release:
        data, test = release.get("data", {}), release.get("test", {})
        lines = [f"**Training data:** generated motion clips (`{data.get('command', '?')}`): "
                 f"{data.get('train_videos', '?')} train / {data.get('val_videos', '?')} val videos, "
                 f"{release.get('epochs', '?')} epochs"]
        if "video_top1" in test:
            lines.append(f"**Held-out accuracy:** {_pct(test['video_top1'])} video@1 on "
                         f"{int(test.get('videos', 0))} unseen test videos of the same generator "
                         f"({test.get('clips_per_video', '?')} clips each)")
        return lines
    if cfg.get("imported_from"):
        return ["**Training data:** as published by the original authors (not re-checked here)",
                "**Held-out accuracy:** not measured in CSN Explorer"]
    lines = [f"**Training data:** `{cfg.get('data') or '?'}`, {cfg.get('epochs', '?')} epoch(s)"]
    if "val_video_top1" in metrics:
        lines.append(f"**Validation accuracy:** {_pct(metrics['val_video_top1'])} video@1 on the "
                     "run's validation split (used to pick nothing, but not a separate test set)")
    else:
        lines.append("**Held-out accuracy:** not measured (no validation split)")
    return lines


def _limits(pr, release: dict[str, Any]) -> list[str]:
    seconds = pr.frames * pr.rate
    out = [f"It only knows these {len(pr.classes)} classes: any video is forced into one of them, "
           "so a confident answer on an unrelated video means nothing.",
           f"Each clip covers {pr.frames} frames sampled every {pr.rate} (about "
           f"{seconds / 25:.1f} s at 25 fps); motion slower or longer than that is not seen.",
           "It does not localise or detect anything; the explanation is for one centre clip."]
    if pr.spec.head == "conv" and any(pr.spec.head_pool):
        from backend.csn.clipfit import smallest_clip
        least = smallest_clip(pr.spec)
        if least:
            out.append(f"Its head averages a fixed {tuple(pr.spec.head_pool)} window: clips "
                       f"shorter than {least[0]} frames or smaller than {least[1]}² px are refused.")
    if release or "synth" in str(pr.info["config"].get("data", "")):
        out.insert(1, "It was trained on generated clips of moving shapes: real footage is far "
                      "outside what it has seen.")
    return out


def _conversion(cfg: dict[str, Any]) -> list[str]:
    """The conversion notes ``backend.convert`` stored: each fact with its source, warnings."""
    model = f", model {cfg['model']}" if cfg.get("model") else ""
    out = [f"**Conversion:** from `{Path(str(cfg['imported_from'])).name}` "
           f"({cfg.get('layout', '?')} layout{model})"]
    facts = cfg.get("facts") or {}
    if facts:
        out.append("\n".join(f"- {k} = {f.get('value')} ({f.get('source')})"
                             for k, f in sorted(facts.items())))
    out += [f"⚠️ {w}" for w in cfg.get("warnings") or []]
    out += [f"- {n}" for n in cfg.get("notes") or []]  # imports made before the facts existed
    if cfg.get("ignored_keys"):
        out.append(f"{len(cfg['ignored_keys'])} source key(s) dropped on request (--ignore)")
    return out


def model_card_markdown(pr, entry) -> str:
    """Markdown for a loaded ``backend.inference.predictor.Predictor`` and its registry entry."""
    release = _release(Path(pr.path)) if entry.origin.startswith("shipped") else {}
    cfg = pr.info["config"]
    names = ", ".join(pr.classes[:SHOW_CLASSES])
    more = f" … and {len(pr.classes) - SHOW_CLASSES} more" if len(pr.classes) > SHOW_CLASSES else ""
    mean, std, order = pr.norm
    t = pr.totals
    lines = [f"### {pr.spec.name}",
             f"**Where it came from:** {entry.origin}",
             f"**Classes ({len(pr.classes)}):** {names}{more}",
             *_training(pr, release),
             f"**Input:** clips of {pr.frames}×{pr.size}×{pr.size} (one frame in {pr.rate}, short "
             f"side scaled then centre-cropped), {order} in [0, 1] normalised with mean "
             f"{tuple(round(v, 4) for v in mean)} and std {tuple(round(v, 4) for v in std)}",
             f"**Size:** {fmt_count(t.all_params)} parameters ({fmt_count(t.params)} in convs and "
             f"fc), {fmt_count(t.flops)} multiply-adds per clip (paper FLOPs; counted by "
             f"backend.csn)"]
    if cfg.get("imported_from"):
        lines += _conversion(cfg)
    limits = "\n".join(f"- {x}" for x in _limits(pr, release))
    return "\n\n".join(lines) + f"\n\n**What it cannot do:**\n{limits}"
