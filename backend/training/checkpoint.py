"""Checkpoints: atomic writing, keep-last-K, and safe loading (``weights_only=True``).

A checkpoint is a plain dict (docs/contracts.md)::

    {"format": "csn-explorer/1", "model": state_dict, "optimizer", "scheduler", "epoch",
     "rng": {...tensors/ints/lists only}, "spec": spec.to_dict(), "classes": [str],
     "config": {...}, "metrics": {...}}

Shipped / exported files may leave out ``optimizer``, ``scheduler`` and ``rng``.
"""
from __future__ import annotations

import errno
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "csn-explorer/1"
CKPT_RE = re.compile(r"^epoch_(\d{4,})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message says which file and why."""


def checkpoint_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:04d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoints of a run, oldest first (by epoch number)."""
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    cks = list_checkpoints(run_dir)
    return cks[-1] if cks else None


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` to ``path.tmp`` then ``os.replace``: ``path`` is either the old file or
    the complete new one, never partial. On an OSError (disk full, read-only, quota) the
    temporary file is removed and :class:`CheckpointError` raised."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise CheckpointError(f"could not write checkpoint {path}: {why}; "
                              f"earlier checkpoints are left intact") from e


def prune(run_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (0 or less keeps all)."""
    if keep_last <= 0:
        return []
    old = list_checkpoints(run_dir)[:-keep_last]
    for p in old:
        p.unlink(missing_ok=True)
    return old


# --- RNG state as tensors / ints / lists (weights_only-loadable) -----------------------------
def rng_state() -> dict[str, Any]:
    """Every RNG the trainer uses, as tensors and plain lists."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"].cpu())
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = st["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in st["cuda"]])


# --- loading --------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The raw dict, loaded with ``weights_only=True``; anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # (its message would quote the file's bytes)
        raise CheckpointError(f"{path} is not a plain-data checkpoint (refusing to unpickle "
                              f"arbitrary objects)") from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError) as e:  # KeyError: text files
        raise CheckpointError(f"{path} is not a readable checkpoint "
                              f"({type(e).__name__} from torch.load)") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a CSN Explorer checkpoint "
                              f"(expected format {FORMAT!r})")
    for key in ("model", "spec", "classes"):
        if key not in ckpt:
            raise CheckpointError(f"{path} lacks {key!r}")
    return ckpt


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu"):
    """``(model, spec, classes, ckpt)``: the model in eval mode with its weights loaded."""
    from backend.csn import SpecError, build_model
    from backend.csn.loading import spec_from_data
    ckpt = read_checkpoint(path, map_location)
    spec_d, cfg = ckpt["spec"], ckpt.get("config") or {}
    if isinstance(spec_d, dict) and "input_mean" not in spec_d and cfg.get("mean") and cfg.get("std"):
        # imported before the spec held the normalisation: it was in config
        spec_d = {**spec_d, "input_mean": cfg["mean"], "input_std": cfg["std"]}
    try:
        spec = spec_from_data(spec_d, "checkpoint spec", validate=False).spec
        model = build_model(spec)
    except SpecError as e:
        raise CheckpointError(f"{Path(path).name[:80]}: its spec is invalid: {e}") from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match its spec: {e}") from None
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    return model, spec, list(ckpt["classes"]), ckpt


def strip_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, **extra: Any) -> dict[str, Any]:
    """Write a release copy of ``src`` to ``dst``: weights, spec, classes, config and metrics
    only (no optimizer, scheduler or RNG state); ``extra`` keys are added. Returns the dict."""
    ckpt = read_checkpoint(src)
    keep = {k: ckpt[k] for k in ("format", "model", "spec", "classes", "config", "metrics", "epoch")
            if k in ckpt}
    keep.update(extra)
    save_atomic(keep, dst)
    return keep


def main(argv: list[str] | None = None) -> int:
    """``python -m backend.training.checkpoint strip SRC DST``: a release copy without training state."""
    import argparse
    import sys
    p = argparse.ArgumentParser(prog="python -m backend.training.checkpoint")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("strip", help="drop optimizer/scheduler/RNG state for shipping")
    s.add_argument("src")
    s.add_argument("dst")
    a = p.parse_args(argv)
    try:
        strip_checkpoint(a.src, a.dst)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{a.dst}: {Path(a.dst).stat().st_size / 1e6:.2f} MB")
    return 0


def clip_settings(spec: Any, ckpt: dict[str, Any], *, frames: int | None = None, rate: int | None = None,
                  size: int | None = None) -> tuple[int, int, int]:
    """``(frames, rate, size)``: the arguments if given, else the checkpoint's training config,
    else the spec's clip (rate 2)."""
    cfg = ckpt.get("config") or {}
    return (int(frames or cfg.get("frames") or spec.frames), int(rate or cfg.get("rate") or 2),
            int(size or cfg.get("size") or spec.height))

if __name__ == "__main__":
    raise SystemExit(main())
