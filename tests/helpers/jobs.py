"""Shared fixtures' helpers for the db/jobs tests: data-dir env, consumer processes, waiting."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONSUMER = str(Path(sys.executable).parent / "huey_consumer")


def tiny_spec(num_classes: int = 2) -> dict[str, Any]:
    """An ir-CSN with one block per stage and widths 8..64: trains in well under a second."""
    from backend.csn import ArchSpec, StageSpec
    return ArchSpec(name="tiny", stem_width=4, frames=8, height=32, width=32, num_classes=num_classes,
                    stages=[StageSpec(blocks=1, width=8 * 2**i, inner=4 * 2**i, block="ir")
                            for i in range(4)]).to_dict()


TINY_HP = {"epochs": 1, "batch_size": 2, "frames": 8, "size": 32, "eval_clips": 1,
           "max_steps_per_epoch": 1, "threads": 1, "workers": 0,
           "log_every": 1}


class Consumer:
    """A real ``huey_consumer jobs.tasks`` process with its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1):
        self.log = log
        self._f = log.open("ab")
        self.proc = subprocess.Popen(
            [CONSUMER, "jobs.tasks", "-w", str(workers), "-k", "thread", "-d", "0.05", "-m", "0.25"],
            cwd=REPO, env=env, stdout=self._f, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self._f.close()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def wait_for(pred: Callable[[], Any], timeout: float, what: str, logs: Callable[[], str] = lambda: "",
              every: float = 0.2) -> Any:
    """Poll ``pred`` until truthy; fail with ``what`` and the consumer logs on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n--- logs ---\n{logs()[-6000:]}")
        time.sleep(every)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_bin(name: str) -> str | None:
    import glob
    import shutil
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None)


@contextlib.contextmanager
def postgres_server():
    """A throw-away PostgreSQL server (``initdb``/``pg_ctl``, the Debian ``postgresql`` package);
    yields its SQLAlchemy URL. Skips the test when it cannot start."""
    import shutil
    import tempfile

    import pytest
    initdb, pg_ctl = _server_bin("initdb"), _server_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("initdb/pg_ctl not found (Debian package postgresql)")
    as_pg = (lambda cmd: cmd) if os.geteuid() != 0 else (lambda cmd: ["runuser", "-u", "postgres", "--", *cmd])
    d = Path(tempfile.mkdtemp(prefix="csn-pg-"))
    if os.geteuid() == 0:
        try:
            shutil.chown(d, "postgres")
        except (LookupError, PermissionError):
            pytest.skip("no postgres account to run the server as")
    port, data = free_port(), d / "data"
    try:
        subprocess.run(as_pg([initdb, "-D", str(data), "-U", "csn", "--auth=trust", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=120)
        subprocess.run(as_pg([pg_ctl, "-D", str(data), "-l", str(d / "log"), "-w", "-t", "60", "-o",
                              f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off", "start"]),
                       check=True, capture_output=True, timeout=90)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {getattr(e, 'stderr', b'') or e}")
    try:
        yield f"postgresql+psycopg://csn@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_pg([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def redis_server():
    """A throw-away ``redis-server`` (Debian package redis-server) on a free port, no
    persistence; yields its URL. Skips the test when it is not installed."""
    import shutil
    import tempfile

    import pytest
    exe = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if not exe:
        pytest.skip("redis-server not found (Debian package redis-server)")
    port, d = free_port(), tempfile.mkdtemp(prefix="csn-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        import redis
        client = redis.Redis(port=port)
        wait_for(lambda: proc.poll() is not None or _pings(client), 20, "redis-server to answer")
        if proc.poll() is not None:
            pytest.skip("redis-server exited at start-up")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False
