"""Predict a video's class with a checkpoint: ``Predictor(path).predict(video)``.

Paper §4.1 test protocol: ``num_clips`` uniformly spaced clips (x ``crops`` crops), softmax
averaged over them. The model is loaded once; each call decodes only the clips it needs.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..csn import ArchSpec, SpecError, count
from ..csn.clipfit import check_clip
from ..csn.perf import autocast, prepare_input, prepare_model, recommended_settings
from ..training.checkpoint import clip_settings
from ..data.video import ClipTransform, Norm, test_clips


#: Multiply-adds per clip from which a model counts as big on a CPU (an ir-CSN-152 at
#: 32x224x224 needs ~97 G; the shipped motion model 0.04 G): the demo then defaults to one
#: clip, Grad-CAM and explanation batches of one.
BIG_MADDS = 5e9
Progress = Callable[[float, str], None]


class ModelLoadError(ValueError):
    """A checkpoint that cannot be loaded; the message is for people."""


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, ArchSpec, list[str], dict[str, Any]]:
    """``(model in eval mode, spec, classes, ckpt)`` from a ``csn-explorer/1`` checkpoint, read
    with ``torch.load(weights_only=True)`` (``backend.training.checkpoint``); errors as ModelLoadError."""
    from ..training.checkpoint import load_checkpoint
    try:
        return load_checkpoint(path)
    except Exception as e:  # noqa: BLE001 - CheckpointError and torch errors
        raise ModelLoadError(str(e)) from None


@dataclass
class Prediction:
    """Top-k classes with probabilities (averaged softmax), and where the time went."""

    top: list[tuple[str, float]]
    probs: torch.Tensor                     # (K,) averaged over clips and crops
    clips: int
    decode_s: float
    model_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.decode_s + self.model_s

    def as_dict(self) -> dict[str, float]:
        return {name: p for name, p in self.top}


class Predictor:
    """One model, loaded once. ``frames``/``rate``/``size`` default to the checkpoint's config."""

    def __init__(self, checkpoint: str | os.PathLike, *, device: str = "cpu", frames: int | None = None,
                 rate: int | None = None, size: int | None = None):
        self.path = Path(checkpoint)
        self.model, self.spec, self.classes, ck = load_model(checkpoint)
        self.device = torch.device(device)
        # measured defaults (bench/bench_depthwise.py): channels_last_3d + the fast depthwise conv on CPU,
        # bf16/fp16 autocast on CUDA; eval mode
        self.settings = recommended_settings(self.device, train=False)
        self.model = prepare_model(self.model, self.device, train=False, settings=self.settings)
        self.frames, self.rate, self.size = clip_settings(self.spec, ck, frames=frames, rate=rate, size=size)
        try:   # a conv head's fixed window must fit: refuse clips it cannot pool
            check_clip(self.spec, self.frames, self.size)
        except SpecError as e:
            raise ModelLoadError(f"{self.path.name[:80]}: cannot run at {self.frames}x{self.size}x"
                                 f"{self.size}: {e}") from None
        # what the model card shows: training config, metrics, epoch (never the weights)
        self.info = {"config": ck.get("config") or {}, "metrics": ck.get("metrics") or {},
                     "epoch": ck.get("epoch")}
        self.norm = Norm.of(self.spec)  # the input normalisation the weights expect
        self.meta = {"name": self.spec.name, "classes": len(self.classes), "frames": self.frames,
                     "rate": self.rate, "size": self.size}
        clip_spec = replace(self.spec, frames=self.frames, height=self.size, width=self.size)
        self.totals = count(clip_spec).totals  # params and multiply-adds of one clip
        self.big = self.totals.flops >= BIG_MADDS

    def clips(self, video: str | os.PathLike, num_clips: int = 1, crops: int = 1,
              progress: Progress | None = None) -> torch.Tensor:
        """The model's input for a video: float (num_clips*crops, 3, T, S, S); ``progress``
        runs after each decoded clip (it may raise to cancel)."""
        def decoded(done: int, total: int) -> None:
            progress(0.0, f"decoded {done}/{total} clip(s)")
        return test_clips(video, frames=self.frames, rate=self.rate, size=self.size,
                          num_clips=num_clips, crops=crops, threads=1, norm=self.norm,
                          progress=decoded if progress is not None else None)

    def transform(self, crops: int = 1) -> ClipTransform:
        """The test-time scaling, crop(s) and normalisation :meth:`clips` applies."""
        return ClipTransform(size=self.size, train=False, crops=crops, norm=self.norm)

    @torch.no_grad()
    def probs(self, x: torch.Tensor, batch: int = 4, progress: Progress | None = None) -> torch.Tensor:
        """Softmax per clip: (N, K). ``progress(fraction, text)`` runs after each batch (it may
        raise to cancel)."""
        outs = []
        for i in range(0, len(x), batch):
            with autocast(self.settings):
                logits = self.model(prepare_input(x[i:i + batch], self.settings))
            outs.append(torch.softmax(logits.float(), dim=1).cpu())
            if progress is not None:
                done = min(len(x), i + batch)
                progress(done / len(x), f"classified {done}/{len(x)} clip(s)")
        return torch.cat(outs)

    def predict(self, video: str | os.PathLike, num_clips: int = 1, crops: int = 1,
                topk: int = 5, progress: Progress | None = None) -> Prediction:
        """Top-k of the softmax averaged over clips; ``progress`` as in :meth:`probs`, called
        after each decoded clip too (batches of 1 for big models, so a cancel lands quickly)."""
        t0 = time.perf_counter()
        x = self.clips(video, num_clips, crops, progress=progress)
        t1 = time.perf_counter()
        p = self.probs(x, batch=1 if self.big else 4, progress=progress).mean(0)
        t2 = time.perf_counter()
        k = min(topk, len(self.classes))
        vals, idx = p.topk(k)
        top = [(self.classes[i], float(v)) for v, i in zip(vals.tolist(), idx.tolist())]
        return Prediction(top, p, len(x), t1 - t0, t2 - t1)
