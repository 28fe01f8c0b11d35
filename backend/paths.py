"""Where server paths typed in the app or sent to the job API may point.

Datasets may come only from the data roots: ``CSN_DATA_ROOTS`` (folders separated by
``os.pathsep``), default the data dir (``CSN_DATA_DIR``, default ``<repo>/var``), which holds
the generated datasets, run outputs and imported models, and the repository's ``data/`` (where
the README's commands write datasets). Checkpoints may come from the same roots and from the
shipped ``backend/assets``. A relative path is tried against the working directory, then
against each root in order: the first of those that lies inside a root and exists is taken,
else the path under the first root. A refusal names the allowed roots only: it never says
whether the path exists, and nothing here reads a file.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "backend" / "assets"


class PathRefused(ValueError):
    """A typed path outside the allowed roots (the message names the roots, nothing else)."""


def data_dir(create: bool = False) -> Path:
    """The data directory: ``CSN_DATA_DIR``, else ``<repo>/var``. ``create`` makes it first,
    for what writes there (the run store, the queue file, run outputs); reading never does."""
    d = Path(os.environ.get("CSN_DATA_DIR") or REPO / "var").resolve()
    if create:
        d.mkdir(parents=True, exist_ok=True)
    return d


def data_roots() -> list[Path]:
    """Folders datasets may come from: ``CSN_DATA_ROOTS``, else ``[data_dir(), <repo>/data]``."""
    env = [p for p in os.environ.get("CSN_DATA_ROOTS", "").split(os.pathsep) if p.strip()]
    roots = [Path(p).expanduser().resolve() for p in env] or [data_dir(), (REPO / "data").resolve()]
    return list(dict.fromkeys(roots))


def model_roots() -> list[Path]:
    """Folders checkpoints may come from: the data roots and the shipped assets."""
    return data_roots() + [ASSETS]


def _within(real: Path, roots: list[Path]) -> bool:
    return any(real == r or real.is_relative_to(r) for r in roots)


def inside_roots(typed: str | os.PathLike, roots: list[Path], what: str = "path") -> Path:
    """``typed`` resolved (symlinks followed) if it lies inside one of ``roots``; otherwise
    :class:`PathRefused`. A relative path is tried against the working directory, then each
    root; the first candidate inside a root that exists wins, else the one under the first root."""
    text = str(typed).strip()
    if not text:
        raise PathRefused(f"no {what} given")
    where = ", ".join(str(r) for r in roots)
    refused = PathRefused(f"{what} refused: only paths inside {where} are allowed "
                          "(set CSN_DATA_ROOTS to allow other folders)")
    if "\x00" in text:
        raise refused
    p = Path(text).expanduser()
    try:
        cwd = [Path.cwd()]
    except OSError:   # the working directory was removed
        cwd = []
    bases = [*cwd, *roots] if not p.is_absolute() else [Path("/")]
    found = []
    for base in bases:
        try:
            real = Path(os.path.realpath(base / p))
        except (OSError, ValueError):
            continue
        # existence is checked only inside the roots, so the answer reveals nothing outside them
        if _within(real, roots) and real.exists():
            return real
        found.append((base, real))
    # nothing exists: the path as the first root (absolute: as typed) would hold it
    fallback = next((real for base, real in found if base in (roots[0], Path("/"))), None)
    if fallback is None or not _within(fallback, roots):
        raise refused
    return fallback


def check_dataset(typed: str | os.PathLike) -> Path:
    """A dataset folder or CSV list typed by a user, resolved inside the data roots."""
    return inside_roots(typed, data_roots(), "dataset path")


def check_checkpoint(typed: str | os.PathLike) -> Path:
    """A checkpoint file typed by a user, resolved inside the model roots."""
    return inside_roots(typed, model_roots(), "checkpoint path")
