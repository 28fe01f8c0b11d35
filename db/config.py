"""Where the data lives: ``CSN_DATA_DIR`` (default ``<repo>/var``) and ``DATABASE_URL``."""
from __future__ import annotations

import os
from pathlib import Path

from backend import paths  # plain os/pathlib, no torch

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The data directory (database, queue file, run outputs); created on demand."""
    d = paths.data_dir()  # one definition, shared with the typed-path roots
    d.mkdir(parents=True, exist_ok=True)
    return d


def database_url() -> str:
    """``DATABASE_URL`` if set, else a SQLite file ``<data dir>/csn.db``."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir() / 'csn.db'}"


def runs_dir() -> Path:
    """Parent of every run's output directory."""
    d = data_dir() / "runs"
    d.mkdir(parents=True, exist_ok=True)
    return d
