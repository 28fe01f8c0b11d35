"""The Huey instance: ``SqliteHuey`` in ``<data dir>/huey.db``, or ``RedisHuey`` when
``HUEY_REDIS_URL`` is set."""
from __future__ import annotations

import os

from huey import Huey, RedisHuey, SqliteHuey

from db.config import data_dir

NAME = "csn-explorer"


def _sqlite_file() -> str:
    return str(data_dir() / "huey.db")


def make_huey() -> Huey:
    """A fresh Huey for the current environment."""
    url = os.environ.get("HUEY_REDIS_URL")
    if url:
        return RedisHuey(NAME, url=url)
    return SqliteHuey(NAME, filename=_sqlite_file(), timeout=30)


huey: Huey = make_huey()


def sync_storage() -> Huey:
    """Point :data:`huey` at the current ``CSN_DATA_DIR`` if it changed since import
    (tests and embedding processes switch data dirs); returns it."""
    if isinstance(huey, SqliteHuey) and not os.environ.get("HUEY_REDIS_URL"):
        want = _sqlite_file()
        if huey.storage.filename != want:
            huey.storage_kwargs["filename"] = want
            huey.storage = huey.create_storage()
    return huey
