"""Worker identity and heartbeat, the reaper that marks runs of dead workers ``crashed``, and
the progress rule (a run whose trainer writes no event for a while is shown as stalled).

A run is ``crashed`` when its worker is a dead process on this host, or when its heartbeat is
older than ``CSN_STALE_S`` seconds (workers on other hosts). The reaper also kills the orphaned
trainer process group if it is still alive here. ``retry_run`` then resumes it. Trainers of
this host whose run is no longer ``running`` (marked crashed from another host, say) are
orphans and are stopped too. A worker checks the database before it starts, and every
``CSN_RECONCILE_S`` seconds re-enqueues queued runs whose queue message was lost.

Before marking a run ``crashed`` the reaper reads its trainer's outcome file
(:mod:`jobs.outcome`): a trainer that exited ends its run by its exit status. A worker never
reaps a run it still supervises, and after a pause (SIGSTOP, a suspended laptop: a heartbeat
gap longer than ``CSN_STALE_S``) it renews its heartbeats and waits one stale period before it
reaps anything, so peers that slept too can renew theirs.
"""
from __future__ import annotations

import atexit
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from db import (CRASHED, RUNNING, Run, StoreError, Worker, as_utc, check_database, read_session,
                utcnow, write)

from .outcome import settle_in
from .resources import worker_gpus, worker_threads

HOST = socket.gethostname()


_warned: set[tuple[str, str]] = set()


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable ``name``; unset, its
    default; anything else (``fast``, ``0``, ``nan``) its default with a warning, printed once
    per value, instead of an error in the thread or page that reads it."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if value > 0 and math.isfinite(value):
        return value
    if (name, raw) not in _warned:
        _warned.add((name, raw))
        print(f"warning: {name}={raw[:40]!r} is not a positive number of seconds; using "
              f"{default:g}", flush=True)
    return default


def heartbeat_s() -> float:
    """Seconds between heartbeats of workers and runs."""
    return env_seconds("CSN_HEARTBEAT_S", 2.0)


def stale_s() -> float:
    """A heartbeat older than this means the worker is gone."""
    return env_seconds("CSN_STALE_S", 30.0)


def reconcile_s() -> float:
    """How often (and after how long) queued runs are checked against the queue."""
    return env_seconds("CSN_RECONCILE_S", 30.0)


def stall_warn_s() -> float:
    """A running run whose trainer wrote no event for this long is shown as stalled."""
    return env_seconds("CSN_STALL_WARN_S", 60.0)


def no_progress_s(progress_at: datetime | None, started_at: datetime | None,
                  now: datetime) -> float | None:
    """Seconds since the trainer's newest event (or since the attempt started), or None."""
    times = [t for t in (as_utc(progress_at), as_utc(started_at)) if t is not None]
    return (now - max(times)).total_seconds() if times else None


def no_progress_text(seconds: float) -> str:
    """``no progress for 3 min`` (seconds under a minute)."""
    return (f"no progress for {int(seconds // 60)} min" if seconds >= 60 else
            f"no progress for {int(seconds)} s")


_supervised: set[int] = set()   # runs this process's supervisors are mirroring now
_supervised_lock = threading.Lock()


def supervising(run_id: int, active: bool) -> None:
    """Tell the reaper of this process that ``run_id`` is (not) being supervised here."""
    with _supervised_lock:
        (_supervised.add if active else _supervised.discard)(run_id)


def _mine() -> set[int]:
    with _supervised_lock:
        return set(_supervised)


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{HOST}:{os.getpid()}"


def pid_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live (not zombie) process on this host."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return True


def _is_trainer(pid: int, out: str | None = None) -> bool:
    """Whether ``pid`` runs ``backend.train`` (for run directory ``out`` when given)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        return b"backend.train" in cmd and (not out or out.encode() in cmd)
    except OSError:
        return os.name == "posix" and not os.path.isdir("/proc")  # no /proc: trust the pid


def kill_group(pid: int | None, grace: float = 5.0) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``grace`` seconds."""
    if not pid:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
        os.killpg(pid, signal.SIGCONT)   # a stopped trainer must run to handle SIGTERM
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def worker_dead(wid: str | None, heartbeat: datetime | None, now: datetime) -> bool:
    """The liveness rule: no heartbeat for ``stale_s()``, or a dead pid on this host."""
    hb = as_utc(heartbeat)
    if hb is None or now - hb > timedelta(seconds=stale_s()):
        return True
    if wid and wid.rsplit(":", 1)[0] == HOST:
        try:
            return not pid_alive(int(wid.rsplit(":", 1)[1]))
        except ValueError:
            return False
    return False


def reap_stale() -> list[int]:
    """Mark running runs of dead workers ``crashed`` (killing orphan trainers), or end them
    as their trainer's outcome file says; the ids of those marked crashed."""
    now, me, mine = utcnow(), worker_id(), _mine()
    with read_session() as s:
        cands = s.execute(select(Run.id, Run.worker_id, Run.heartbeat_at).where(
            Run.status == RUNNING)).all()
    dead = [rid for rid, wid, hb in cands
            if not (wid == me and rid in mine) and worker_dead(wid, hb, now)]
    reaped = []
    for rid in dead:
        def mark(s, rid=rid):
            r = s.get(Run, rid)
            if r is None or r.status != RUNNING or not worker_dead(r.worker_id, r.heartbeat_at, utcnow()):
                return None
            if settle_in(s, r):       # the trainer had finished: its exit status decides
                return None
            pid, wid, out = r.pid, r.worker_id, r.output_dir
            hb = as_utc(r.heartbeat_at)
            seen = f"{hb:%H:%M:%S} UTC" if hb is not None else "never"
            r.status, r.finished_at = CRASHED, utcnow()
            r.error = (f"worker {wid} stopped while the run was running (last heartbeat "
                       f"{seen}); retry resumes from the last checkpoint")
            return pid, wid, out
        try:
            got = write(mark)
        except Exception as e:  # noqa: BLE001 - one unreadable run must not stop the others' reaping
            print(f"reap: run {rid}: {e!r}"[:300], flush=True)
            continue
        if got is None:
            continue
        pid, wid, out = got
        if pid and wid and wid.rsplit(":", 1)[0] == HOST and pid_alive(pid) and _is_trainer(pid, out):
            kill_group(pid, grace=2.0)
        reaped.append(rid)
    reap_orphans()
    return reaped


def reap_orphans() -> list[int]:
    """Stop live trainers on this host whose run is not ``running`` any more; their run ids."""
    with read_session() as s:
        rows = s.execute(select(Run.id, Run.pid, Run.output_dir).where(
            Run.status != RUNNING, Run.pid.is_not(None), Run.worker_id.like(f"{HOST}:%"))).all()
    done = []
    for rid, pid, out in rows:
        if pid_alive(pid) and _is_trainer(pid, out):
            kill_group(pid, grace=2.0)
            done.append(rid)

        def clear(s, rid=rid):
            r = s.get(Run, rid)
            if r is not None and r.status != RUNNING:
                r.pid = None
        write(clear)
    return done


def renew_runs() -> None:
    """Refresh the heartbeat of the runs this process supervises (after a pause)."""
    mine, me = _mine(), worker_id()

    def renew(s):
        for r in s.scalars(select(Run).where(Run.id.in_(mine), Run.status == RUNNING,
                                             Run.worker_id == me)):
            r.heartbeat_at = utcnow()
    if mine:
        write(renew)


def beat(stopped: bool = False) -> None:
    """Upsert this worker's liveness row."""
    wid = worker_id()

    def up(s):
        w = s.get(Worker, wid)  # holds the write lock from here: a late beat cannot undo "stopped"
        gone = stopped or _stopping.is_set()
        if w is None:
            s.add(Worker(id=wid, hostname=HOST, pid=os.getpid(), stopped=gone,
                         gpus=",".join(_inventory[0]), threads=_inventory[1]))
        else:
            w.last_seen, w.stopped = utcnow(), gone
    write(up)


_inventory: tuple[list[str], int] = ([], 0)
_started = threading.Lock()
_stopping = threading.Event()
_thread: threading.Thread | None = None


def start_heartbeat(on_tick: Callable[[], object] | None = None) -> None:
    """Start (once per process) the thread that beats and reaps every ``heartbeat_s()`` and
    every ``reconcile_s()`` calls ``on_tick`` (the worker re-enqueues lost queued runs) and
    settles crashed runs whose trainer has since finished. First the database is checked
    (``StoreError`` when it is damaged or unreachable) and dead workers' runs are reaped."""
    global _thread, _inventory
    with _started:
        if _thread is not None:
            return
        problem = check_database()
        if problem:
            raise StoreError(problem)
        _inventory = (worker_gpus(), worker_threads())
        beat()
        reap_stale()

        def loop() -> None:
            from .outcome import settle_crashed
            next_reconcile, last, reap_from = time.monotonic(), time.time(), 0.0
            period = heartbeat_s()
            while True:
                time.sleep(period)
                try:
                    if time.time() - last > stale_s():    # wall clock: counts a suspend too
                        reap_from = time.time() + stale_s()
                    beat()
                    last = time.time()
                    if last < reap_from:                   # woken from a pause: renew only
                        renew_runs()
                        continue
                    reap_stale()
                    if time.monotonic() >= next_reconcile:
                        next_reconcile = time.monotonic() + reconcile_s()
                        if on_tick is not None:
                            on_tick()
                        settle_crashed()
                except Exception as e:  # keep beating through transient DB errors
                    print(f"heartbeat: {e!r}", flush=True)

        _thread = threading.Thread(target=loop, name="csn-heartbeat", daemon=True)
        _thread.start()
        atexit.register(_stopped)


def _stopped() -> None:
    _stopping.set()
    try:
        beat(stopped=True)
    except Exception:
        pass
