"""Reading a checkpoint safely: ``torch.load(weights_only=True)``, or for Caffe2 blob pickles an
unpickler that builds numpy arrays and nothing else. A file that needs more (an mmengine
training checkpoint, any pickled object) is refused with the reason and, where one exists, the
command that strips it.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from .records import ConvertError, Source

_NUMPY_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("__builtin__", "bytes"), ("builtins", "bytes"),
}

class _ArrayUnpickler(pickle.Unpickler):
    """Caffe2 blob pickles: a restricted unpickler that builds numpy arrays and nothing else."""

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in _NUMPY_ALLOWED:
            import numpy as np  # noqa: F401  (resolves numpy.core -> numpy._core aliases)
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")

_FRAMEWORKS = ("mmengine.", "mmcv.", "mmaction.")

def _unsafe_globals(path: Path, e: Exception) -> list[str]:
    """The globals that keep ``path`` from loading with weights_only, framework classes first
    (torch returns them in no fixed order; the first few are named in the error). Of an
    old-format (pre-zip) file only the one torch's error ``e`` names is known."""
    try:
        found = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - not a zip checkpoint
        found = set(re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(e)))
    return sorted(found, key=lambda g: (not g.startswith(_FRAMEWORKS), g))

def _refuse(path: Path, e: Exception) -> ConvertError:
    blocked = _unsafe_globals(path, e)
    if blocked and blocked[0].startswith(_FRAMEWORKS):
        return ConvertError(
            f"{path}: an mmengine training checkpoint: it pickles {', '.join(blocked[:4])}, which "
            "torch.load(weights_only=True) refuses to build. Strip the training state with "
            "mmaction2's own tool, then convert its output: python tools/deployment/"
            f"publish_model.py {path.name} {path.stem}_published.pth")
    m = re.search(r"WeightsUnpickler error: (.+)", str(e))  # torch's reason, after its advice
    first = m[1] if m else (str(e).splitlines() or [""])[0]
    why = f"it pickles {', '.join(blocked[:4])}" if blocked else f"{type(e).__name__}: {first[:160]}"
    return ConvertError(f"{path}: cannot be read safely with torch.load(weights_only=True) ({why}); "
                        "only plain tensor / numpy-array checkpoints are accepted")

def _read(path: Path):
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types here
        if head[:2] == b"PK" or head[:1] != b"\x80":
            raise _refuse(path, e) from None
        refused = e
    try:  # a raw pickle that torch cannot read: a Caffe2 dict of numpy arrays?
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as e:  # noqa: BLE001
        raise _refuse(path, e) from None
    if not isinstance(obj, dict):  # an old-format torch file: its leading magic number
        raise _refuse(path, refused)
    return obj

def load_source(path: str | Path) -> Source:
    """Read a checkpoint (``weights_only=True``): its flat tensor dict, its ``meta`` (mmaction2)
    and its file name. Unwraps ``model_state`` (pytorchvideo), ``state_dict`` (mmaction2),
    ``model`` and ``blobs`` (Caffe2)."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    obj = _read(path)
    meta = obj.get("meta") if isinstance(obj, dict) and isinstance(obj.get("meta"), dict) else {}
    for key in ("model_state", "state_dict", "model", "blobs"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    out: dict[str, torch.Tensor] = {}
    named: dict[str, str] = {}  # our key -> the file's key
    for key, v in obj.items():
        k = str(key)
        k = k[len("module."):] if k.startswith("module.") else k
        if type(v).__module__ == "numpy" and hasattr(v, "shape"):
            try:
                v = torch.as_tensor(v)
            except (TypeError, RuntimeError, ValueError):
                raise ConvertError(f"{path}: array {k!r} has dtype {v.dtype}, not a tensor type") from None
        if not isinstance(v, torch.Tensor):
            continue
        if k in out:
            raise ConvertError(f"{path}: keys {named[k]!r} and {str(key)!r} both name tensor {k!r}")
        out[k], named[k] = v, str(key)
    if not out:
        raise ConvertError(f"{path}: no tensors found")
    return Source(out, meta, path.name)
