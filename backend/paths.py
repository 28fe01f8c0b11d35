"""Where server paths typed in the app or sent to the job API may point.

Datasets may come only from the data roots: ``CSN_DATA_ROOTS`` (folders separated by
``os.pathsep``), default the data dir (``CSN_DATA_DIR``, default ``<repo>/var``), which holds
the generated datasets, run outputs and imported models. Checkpoints may come from the same
roots and from the shipped ``backend/assets``. A relative path is taken relative to the first
root. A refusal names the allowed roots only: it never says whether the path exists, and
nothing here reads a file.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "backend" / "assets"


class PathRefused(ValueError):
    """A typed path outside the allowed roots (the message names the roots, nothing else)."""


def data_dir() -> Path:
    """The data directory: ``CSN_DATA_DIR``, else ``<repo>/var`` (not created here)."""
    return Path(os.environ.get("CSN_DATA_DIR") or REPO / "var").resolve()


def data_roots() -> list[Path]:
    """Folders datasets may come from: ``CSN_DATA_ROOTS``, else ``[data_dir()]``."""
    env = [p for p in os.environ.get("CSN_DATA_ROOTS", "").split(os.pathsep) if p.strip()]
    return [Path(p).expanduser().resolve() for p in env] or [data_dir()]


def model_roots() -> list[Path]:
    """Folders checkpoints may come from: the data roots and the shipped assets."""
    return data_roots() + [ASSETS]


def inside_roots(typed: str | os.PathLike, roots: list[Path], what: str = "path") -> Path:
    """``typed`` resolved (symlinks followed) if it lies inside one of ``roots``; otherwise
    :class:`PathRefused`. Relative paths are relative to ``roots[0]``."""
    text = str(typed).strip()
    if not text:
        raise PathRefused(f"no {what} given")
    where = ", ".join(str(r) for r in roots)
    refused = PathRefused(f"{what} refused: only paths inside {where} are allowed "
                          "(set CSN_DATA_ROOTS to allow other folders)")
    if "\x00" in text:
        raise refused
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = roots[0] / p
    try:
        real = Path(os.path.realpath(p))
    except (OSError, ValueError):
        raise refused from None
    if not any(real == r or real.is_relative_to(r) for r in roots):
        raise refused
    return real


def check_dataset(typed: str | os.PathLike) -> Path:
    """A dataset folder or CSV list typed by a user, resolved inside the data roots."""
    return inside_roots(typed, data_roots(), "dataset path")


def check_checkpoint(typed: str | os.PathLike) -> Path:
    """A checkpoint file typed by a user, resolved inside the model roots."""
    return inside_roots(typed, model_roots(), "checkpoint path")
