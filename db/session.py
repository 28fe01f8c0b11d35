"""Engine and sessions: one engine per URL, schema created on first use.

SQLite gets WAL, a busy timeout and foreign keys on every connection. Write transactions
(:func:`write`) start with ``BEGIN IMMEDIATE`` there, so a writer waits for the lock up front
instead of failing to upgrade a read lock, and are retried on a residual "database is locked".
Nothing here is SQLite-only SQL on other dialects.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateIndex

from .config import database_url
from .models import Base

T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default :func:`database_url`), creating tables on first use."""
    url = url or database_url()
    with _lock:
        eng = _engines.get(url)
        if eng is None:
            kw = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}} if url.startswith("sqlite") else {
                "pool_pre_ping": True}
            eng = create_engine(url, **kw)
            if eng.dialect.name == "sqlite":
                _sqlite_setup(eng)
            _retry(lambda: Base.metadata.create_all(eng))
            _retry(lambda: _add_missing(eng))
            _engines[url] = eng
        return eng


def _add_missing(eng: Engine) -> None:
    """Bring a store made by an older version up to date: add missing nullable columns and
    missing indexes (additive only; nothing is dropped or rewritten). Safe when several
    processes start at once: a column another one just added is not an error."""
    for table in Base.metadata.sorted_tables:
        have = {col["name"] for col in inspect(eng).get_columns(table.name)}
        for col in table.columns:
            if col.name in have or not col.nullable:
                continue
            try:
                with eng.begin() as c:
                    c.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {col.name} "
                                      f"{col.type.compile(dialect=eng.dialect)}")
            except (OperationalError, ProgrammingError):
                if col.name not in {x["name"] for x in inspect(eng).get_columns(table.name)}:
                    raise
        with eng.begin() as c:
            for ix in table.indexes:
                c.execute(CreateIndex(ix, if_not_exists=True))


def dispose_engines() -> None:
    """Forget all engines (tests switch ``DATABASE_URL``/``CSN_DATA_DIR``)."""
    with _lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()


def _is_busy(e: OperationalError) -> bool:
    msg = str(e.orig).lower() if e.orig is not None else str(e).lower()
    return "locked" in msg or "busy" in msg or "deadlock" in msg


def _retry(fn: Callable[[], T], attempts: int = 8) -> T:
    for i in range(attempts):
        try:
            return fn()
        except OperationalError as e:
            if not _is_busy(e) or i == attempts - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2 ** i) * (0.5 + random.random()))
    raise AssertionError("unreachable")


@contextmanager
def read_session(url: str | None = None) -> Iterator[Session]:
    """A short read-only session; objects stay usable after it closes."""
    with Session(get_engine(url), expire_on_commit=False) as s:
        yield s


def write(fn: Callable[[Session], T], url: str | None = None) -> T:
    """Run ``fn(session)`` in one write transaction, committed; retried when the DB is busy.

    ``fn`` may run more than once, so it must only touch the database.
    """
    eng = get_engine(url)
    if eng.dialect.name == "sqlite":
        eng = eng.execution_options(sqlite_immediate=True)
    maker = sessionmaker(eng, expire_on_commit=False)

    def once() -> T:
        with maker() as s, s.begin():
            return fn(s)

    return _retry(once)
