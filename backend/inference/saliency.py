"""Explanations for any ``CSN`` with Captum, and their rendering.

Methods (``METHODS``):

=====================  ========================================================================
saliency               |d logit / d input| (one backward pass)
integrated_gradients   IG from a zero (= dataset-mean colour) baseline; ``internal_batch_size``
                       bounds memory
gradcam                LayerGradCam on one stage (conv2..conv5), upsampled to T x H x W
frame_ablation         FeatureAblation with one feature per frame: the drop in the target's
                       logit when a frame is replaced by the mean colour
=====================  ========================================================================

Every method returns an :class:`Explanation` with a heat map (T, H, W) in [0, 1] and a
per-frame importance (T,). ``progress(fraction, text)`` is called as forward passes finish.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

METHODS: tuple[str, ...] = ("saliency", "integrated_gradients", "gradcam", "frame_ablation")
STAGES: tuple[str, ...] = ("conv2", "conv3", "conv4", "conv5")
Progress = Callable[[float, str], None]


@dataclass
class Explanation:
    method: str
    target: int
    heat: np.ndarray              # float32 (T, H, W) in [0, 1]
    frame_importance: np.ndarray  # float32 (T,); for frame_ablation: logit drop per frame
    seconds: float
    stage: str | None = None


class _Counted(nn.Module):
    """Wraps a model to report progress per forward pass."""

    def __init__(self, model: nn.Module, total: int, progress: Progress | None, label: str):
        super().__init__()
        self.model, self.total, self.progress, self.label, self.done = model, max(1, total), progress, label, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.done += 1
        if self.progress is not None:
            self.progress(min(1.0, self.done / self.total), f"{self.label}: pass {self.done}/{self.total}")
        return out


def _normalise(a: np.ndarray) -> np.ndarray:
    a = np.nan_to_num(a.astype(np.float32))
    a = a - a.min()
    hi = float(np.percentile(a, 99.5)) if a.size else 0.0
    if hi <= 1e-12:
        hi = float(a.max()) or 1.0
    return np.clip(a / hi, 0.0, 1.0)


def explain(model: nn.Module, clip: torch.Tensor, method: str = "gradcam", *, target: int | None = None,
            stage: str = "conv4", n_steps: int = 16, internal_batch_size: int = 4,
            frames_per_eval: int = 4, progress: Progress | None = None) -> Explanation:
    """Explain ``model``'s logit ``target`` (default: its top class) for one clip (3, T, H, W)."""
    from captum.attr import (FeatureAblation, IntegratedGradients, LayerAttribution, LayerGradCam,
                             Saliency)

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if clip.dim() == 5:
        if clip.shape[0] != 1:
            raise ValueError("explain one clip at a time")
        clip = clip[0]
    model.eval()
    device = next(model.parameters()).device
    x = clip.unsqueeze(0).detach().float().to(device)
    T = x.shape[2]
    t0 = time.perf_counter()
    if target is None:
        with torch.no_grad():
            target = int(model(x).argmax(1))
    if method == "saliency":
        f = _Counted(model, 1, progress, "saliency")
        attr = Saliency(f).attribute(x.requires_grad_(), target=target, abs=True)
        heat = attr[0].sum(0).detach().cpu().numpy()
        imp = heat.reshape(T, -1).sum(1)
    elif method == "integrated_gradients":
        ibs = max(1, internal_batch_size)
        f = _Counted(model, math.ceil(n_steps / ibs), progress, "integrated gradients")
        attr = IntegratedGradients(f).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                n_steps=n_steps, internal_batch_size=ibs)
        heat = attr[0].abs().sum(0).detach().cpu().numpy()
        imp = attr[0].sum(dim=(0, 2, 3)).detach().cpu().numpy()   # signed contribution per frame
    elif method == "gradcam":
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        layer = getattr(model, stage)
        f = _Counted(model, 1, progress, f"Grad-CAM on {stage}")
        cam = LayerGradCam(f, layer).attribute(x, target=target, relu_attributions=True)
        up = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="trilinear")
        heat = up[0, 0].detach().cpu().numpy()
        imp = heat.reshape(T, -1).mean(1)
    else:
        per = max(1, frames_per_eval)
        f = _Counted(model, 1 + math.ceil(T / per), progress, "frame ablation")
        mask = torch.arange(T, device=device).view(1, 1, T, 1, 1)
        with torch.no_grad():
            attr = FeatureAblation(f).attribute(x, baselines=0.0, target=target, feature_mask=mask,
                                                perturbations_per_eval=per)
        imp = attr[0, 0, :, 0, 0].cpu().numpy()
        heat = np.broadcast_to(np.clip(imp, 0, None)[:, None, None], x.shape[2:]).copy()
    if progress is not None:
        progress(1.0, "done")
    return Explanation(method, int(target), _normalise(heat), np.asarray(imp, dtype=np.float32),
                       time.perf_counter() - t0, stage if method == "gradcam" else None)


# --- rendering ------------------------------------------------------------------------------

_CMAP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float32)  # inferno-like


def colormap(v: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 RGB (..., 3)."""
    pos = np.clip(v, 0, 1) * (len(_CMAP) - 1)
    i = np.minimum(pos.astype(int), len(_CMAP) - 2)
    w = (pos - i)[..., None]
    return (_CMAP[i] * (1 - w) + _CMAP[i + 1] * w).astype(np.uint8)


def to_frames(clip: torch.Tensor, mean, std, order: str = "RGB") -> np.ndarray:
    """Undo normalisation: (3, T, H, W) float -> uint8 RGB (T, H, W, 3)."""
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
    x = ((clip.detach().cpu() * s + m).clamp(0, 1) * 255).round().byte()
    x = x.flip(0) if order == "BGR" else x
    return x.permute(1, 2, 3, 0).numpy()


def overlay(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a (T, H, W) heat map over uint8 frames (T, H, W, 3)."""
    col = colormap(heat).astype(np.float32)
    a = alpha * np.clip(heat, 0, 1)[..., None] ** 0.5
    return (frames.astype(np.float32) * (1 - a) + col * a).round().astype(np.uint8)


def _upscale(frames: np.ndarray, min_side: int) -> np.ndarray:
    t, h, w, _ = frames.shape
    f = max(1, math.ceil(min_side / min(h, w)))
    return frames.repeat(f, axis=1).repeat(f, axis=2) if f > 1 else frames


def render(frames: np.ndarray, exp: Explanation, out_dir: str | Path, *, fps: float = 8.0,
           min_side: int = 224, keyframes: int = 4) -> dict:
    """Write ``side_by_side.mp4`` (original | overlay, H.264) into ``out_dir``; return paths,
    key frames (the most important frames, original and overlay) and per-frame data."""
    from ..data.encode import write_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ov = overlay(frames, exp.heat)
    big = _upscale(np.concatenate([frames, ov], axis=2), min_side)
    if big.shape[1] % 2 or big.shape[2] % 2:
        big = big[:, : big.shape[1] // 2 * 2, : big.shape[2] // 2 * 2]
    video = write_video(out / "side_by_side.mp4", big, fps=fps, codec="h264")
    order = np.argsort(-exp.frame_importance)[:keyframes]
    gallery = [(_upscale(ov[i:i + 1], min_side)[0], f"frame {i}: importance {exp.frame_importance[i]:.3g}")
               for i in sorted(order.tolist())]
    return {"video": str(video), "gallery": gallery, "frame_importance": exp.frame_importance.tolist(),
            "overlay_frames": ov}
