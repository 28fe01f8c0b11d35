"""The Huey instance: SQLite storage in ``<data dir>/huey.db``, or Redis when
``HUEY_REDIS_URL`` is set (the ``redis`` package is a requirement)."""
from __future__ import annotations

import os

from huey import Huey
from huey.storage import RedisStorage, SqliteStorage

from backend.paths import data_dir

NAME = "csn-explorer"


def _storage() -> tuple[type, dict]:
    url = os.environ.get("HUEY_REDIS_URL")
    if url:
        return RedisStorage, {"url": url}
    return SqliteStorage, {"filename": str(data_dir(create=True) / "huey.db"), "timeout": 30}


def make_huey() -> Huey:
    """A fresh Huey for the current environment."""
    cls, kw = _storage()
    return Huey(NAME, storage_class=cls, **kw)


huey: Huey = make_huey()


def sync_storage() -> Huey:
    """Point :data:`huey` at the current ``HUEY_REDIS_URL`` / ``CSN_DATA_DIR`` if they changed
    since import (tests and embedding processes switch them); returns it."""
    cls, kw = _storage()
    if huey.storage_class is not cls or huey.storage_kwargs != kw:
        huey.storage_class, huey.storage_kwargs = cls, kw
        huey.storage = huey.create_storage()
    return huey


def queue_problem() -> str | None:
    """None when the queue answers; else what is wrong with it, in one sentence."""
    url = os.environ.get("HUEY_REDIS_URL")
    where = f"Redis at HUEY_REDIS_URL={url.split('@')[-1]}" if url else "the SQLite queue file"
    try:
        sync_storage().pending_count()
    except Exception as e:  # noqa: BLE001 - any failure to answer is the message
        return f"cannot reach the job queue ({where}): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None
