"""Where the data lives: ``CSN_DATA_DIR`` (default ``<repo>/var``) and ``DATABASE_URL``."""
from __future__ import annotations

import os
from pathlib import Path

from backend.paths import data_dir  # plain os/pathlib, no torch

REPO = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """``DATABASE_URL`` if set, else a SQLite file ``<data dir>/csn.db``."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir(create=True) / 'csn.db'}"


def runs_dir() -> Path:
    """Parent of every run's output directory."""
    d = data_dir(create=True) / "runs"
    d.mkdir(parents=True, exist_ok=True)
    return d
