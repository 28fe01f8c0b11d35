"""Shared fixtures' helpers for the db/jobs tests: data-dir env, consumer processes, waiting."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
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
