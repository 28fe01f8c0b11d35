"""Engine and sessions: one engine per URL, schema created on first use.

SQLite gets WAL, a busy timeout and foreign keys on every connection. Write transactions
(:func:`write`) start with ``BEGIN IMMEDIATE`` there, so a writer waits for the lock up front
instead of failing to upgrade a read lock, and are retried on a residual "database is locked".
Nothing here is SQLite-only SQL on other dialects. An older database gets the columns it lacks
(``ALTER TABLE ... ADD COLUMN``, additive only); a damaged one raises :class:`StoreError`.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, literal, make_url, text
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateIndex

from .config import database_url
from .models import Base

T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000
_engines: dict[str, Engine] = {}
_lock = threading.Lock()
DAMAGED = ("malformed", "not a database", "disk image", "corrupt")


class StoreError(RuntimeError):
    """The run database cannot be used (damaged, unreachable, misconfigured); says which and why."""


def safe_url(url: str | None = None) -> str:
    """The database URL without its password (for messages)."""
    try:
        return make_url(url or database_url()).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is shown as a placeholder
        return "<unparsable DATABASE_URL>"


def _store_error(e: Exception, url: str) -> StoreError:
    msg = str(getattr(e, "orig", None) or e).splitlines()[0]
    if any(w in msg.lower() for w in DAMAGED):
        return StoreError(f"the run database {safe_url(url)} is damaged ({msg}): stop the workers, "
                          "then restore a backup or move the file aside (a new one is created)")
    return StoreError(f"cannot use the run database {safe_url(url)}: {msg}")


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
            try:
                _retry(lambda: Base.metadata.create_all(eng))
                _retry(lambda: add_missing_columns(eng))
            except Exception as e:
                eng.dispose()
                if isinstance(e, (DatabaseError, OSError)):
                    raise _store_error(e, url) from None
                raise
            _engines[url] = eng
        return eng


def add_missing_columns(eng: Engine) -> list[str]:
    """Bring a store made by an older version up to date, additively: add the model columns an
    existing table lacks (nullable in SQL, with the model's scalar default when it has one)
    and its missing indexes. Safe when several processes start at once. Returns the
    ``table.column`` names added."""
    insp, added = inspect(eng), []
    for table in Base.metadata.sorted_tables:
        if not insp.has_table(table.name):
            continue
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name in have:
                continue
            ddl = f"ALTER TABLE {table.name} ADD COLUMN {col.name} {col.type.compile(eng.dialect)}"
            if col.default is not None and col.default.is_scalar:
                lit = literal(col.default.arg, col.type).compile(eng, compile_kwargs={"literal_binds": True})
                ddl += f" DEFAULT {lit}"
            try:
                with eng.begin() as conn:
                    conn.exec_driver_sql(ddl)
            except DatabaseError as e:  # another process added it first
                if "duplicate" not in str(e).lower() and "already exists" not in str(e).lower():
                    raise
            added.append(f"{table.name}.{col.name}")
        with eng.begin() as conn:
            for ix in table.indexes:
                conn.execute(CreateIndex(ix, if_not_exists=True))
    return added


def check_database(url: str | None = None) -> str | None:
    """None when the run database opens and answers (SQLite: ``PRAGMA quick_check`` passes);
    otherwise what is wrong, in one sentence."""
    url = url or database_url()
    try:
        eng = get_engine(url)
        with eng.connect() as conn:
            if eng.dialect.name == "sqlite":
                rows = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check").fetchall()]
                if rows != ["ok"]:
                    return str(_store_error(RuntimeError(
                        f"PRAGMA quick_check found {len(rows)} problem(s): database disk image is malformed"), url))
            else:
                conn.execute(text("SELECT 1"))
    except StoreError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - any failure to answer is the message
        return str(_store_error(e, url))
    return None


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
        except DatabaseError as e:
            if isinstance(e, OperationalError) and _is_busy(e) and i < attempts - 1:
                time.sleep(min(2.0, 0.05 * 2 ** i) * (0.5 + random.random()))
                continue
            if any(w in str(e).lower() for w in DAMAGED):
                raise _store_error(e, "") from None
            raise
    raise AssertionError("unreachable")


@contextmanager
def read_session(url: str | None = None) -> Iterator[Session]:
    """A short read-only session; objects stay usable after it closes."""
    with Session(get_engine(url), expire_on_commit=False) as s:
        try:
            yield s
        except DatabaseError as e:
            if any(w in str(e).lower() for w in DAMAGED):
                raise _store_error(e, url or "") from None
            raise


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
