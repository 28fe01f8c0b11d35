"""Hyper-parameters of a run, checked against ``backend.train.TrainConfig``'s fields.

The field names and types are read from the dataclass's source (``ast``), so this stays
torch-free and TrainConfig remains the one source of truth. The worker owns the paths
(``out``, ``data``, ``arch``, ``resume``): hparams can never set them. ``gpus`` and
``threads`` are the run's resource request.
"""
from __future__ import annotations

import ast
import threading
from functools import lru_cache
from typing import Any

from db.config import REPO

RESERVED = ("out", "data", "arch", "resume")   # set by the worker from the run row
RESOURCES = ("gpus", "threads")                 # the run's resource request
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_parse_lock = threading.Lock()   # CPython 3.11's ast.parse is not safe in two threads at once


def train_fields() -> dict[str, tuple[tuple[type, ...], Any]]:
    """``{field: (accepted types, default)}`` of TrainConfig, parsed from backend/train.py."""
    with _parse_lock:
        return _train_fields()


@lru_cache(maxsize=1)
def _train_fields() -> dict[str, tuple[tuple[type, ...], Any]]:
    tree = ast.parse((REPO / "backend" / "train.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainConfig")
    out = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            parts = [p.strip() for p in ast.unparse(node.annotation).split("|")]
            types = tuple(t for p in parts for t in _TYPES.get(p, ()))
            try:
                default = ast.literal_eval(node.value) if node.value is not None else None
            except ValueError:
                default = None
            out[node.target.id] = (types, default)
    return out


def validate_hparams(hparams: dict[str, Any] | None) -> dict[str, Any]:
    """A checked copy of ``hparams``; ``ValueError`` naming every bad key otherwise."""
    hp = dict(hparams or {})
    fields, bad = train_fields(), []
    for k, v in hp.items():
        if k in RESERVED:
            bad.append(f"{k!r} is set by the worker and cannot be a hyper-parameter")
        elif k == "gpus":
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                bad.append(f"gpus must be a whole number >= 0 (or None for automatic), got {v!r}")
        elif k not in fields:
            bad.append(f"unknown hyper-parameter {k!r}")
        elif v is None:
            continue
        elif k == "threads" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            bad.append(f"threads must be a whole number >= 1, got {v!r}")
        else:
            types, _ = fields[k]
            if types and (not isinstance(v, types) or (isinstance(v, bool) and bool not in types)):
                want = " or ".join(t.__name__ for t in types)
                bad.append(f"{k} must be {want}, got {type(v).__name__} {v!r}")
    if bad:
        raise ValueError("invalid hyper-parameters: " + "; ".join(bad))
    return hp


def hparam_args(hparams: dict[str, Any]) -> list[str]:
    """Trainer flags of validated hparams: ``{"batch_size": 2, "amp": "bf16"}`` ->
    ``["--batch-size", "2", "--amp", "bf16"]``; True is a bare ``--flag``; False is
    ``--no-flag`` for a switch whose default is on or automatic, else nothing."""
    out: list[str] = []
    for k, v in validate_hparams(hparams).items():
        if k in RESOURCES or v is None:
            continue
        flag = "--" + k.replace("_", "-")
        if v is False:
            out += [] if train_fields()[k][1] is False else ["--no-" + flag[2:]]
        else:
            out += [flag] if v is True else [flag, str(v)]
    return out
