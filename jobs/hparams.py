"""Hyper-parameters of a run, checked against ``TrainConfig``'s fields.

``backend.training.config`` is torch-free, so the queue checks a run against the same dataclass
the trainer reads and builds the trainer's flags with the trainer's own rule. The worker owns
the paths (``out``, ``data``, ``arch``, ``resume``): hparams can never set them. ``gpus`` and
``threads`` are the run's resource request.
"""
from __future__ import annotations

from typing import Any

from backend.training.config import WORKER_OWNED, TrainConfig, field_types, to_args, train_fields

RESERVED = WORKER_OWNED
RESOURCES = ("gpus", "threads")                 # the run's resource request


def _type_error(name: str, value: Any) -> str | None:
    types = field_types(train_fields()[name])
    if types and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
        want = " or ".join(t.__name__ for t in types)
        return f"{name} must be {want}, got {type(value).__name__}"
    return None


def _field_errors(hp: dict[str, Any]) -> list[str]:
    bad, known = [], train_fields()
    for k, v in hp.items():
        if k in RESERVED:
            bad.append(f"{k!r} is set by the worker and cannot be a hyper-parameter")
        elif k == "gpus":
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                bad.append("gpus must be a whole number >= 0 (or None for automatic)")
        elif k not in known:
            bad.append(f"unknown hyper-parameter {str(k)[:80]!r}")
        elif v is None:
            continue
        elif k == "threads" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            bad.append("threads must be a whole number >= 1")
        elif (err := _type_error(k, v)) is not None:
            bad.append(err)
    return bad


def validate_hparams(hparams: dict[str, Any] | None) -> dict[str, Any]:
    """A checked copy of ``hparams``; ``ValueError`` naming every bad key otherwise.

    Types are checked first; then TrainConfig's own rules run (``epochs >= 1``, known
    optimizers, ...), so the queue refuses what the trainer would."""
    hp = dict(hparams or {})
    bad = _field_errors(hp)
    if not bad:
        try:
            TrainConfig(**{k: v for k, v in hp.items() if k not in RESOURCES and v is not None})
        except ValueError as e:
            bad.append(str(e))
    if bad:
        raise ValueError("invalid hyper-parameters: " + "; ".join(bad))
    return hp


def hparam_args(hparams: dict[str, Any]) -> list[str]:
    """Trainer flags of validated hparams (``backend.training.config.to_args``), resources left out."""
    hp = validate_hparams(hparams)
    return to_args({k: v for k, v in hp.items() if k not in RESOURCES})
