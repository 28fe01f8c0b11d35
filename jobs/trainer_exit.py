"""How a trainer ended, for people: its log's tail, its last ``error:`` line, and the signal
that killed it with the likely cause."""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

LOG_TAIL_CHARS = 4000


def log_tail(log: Path, start: int = 0) -> str:
    """The last LOG_TAIL_CHARS of a trainer's log from ``start`` ('' when unreadable)."""
    try:
        with log.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(start, size - LOG_TAIL_CHARS))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def error_line(text: str) -> str | None:
    """The message of the last ``error: ...`` line (argparse's ``prog: error: ...`` too)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("error:"):
            return line[len("error:"):].strip()
        if ": error: " in line:
            return line.split(": error: ", 1)[1].strip()
    return None


CAUSES = {signal.SIGKILL: "most likely the kernel's out-of-memory killer (see `dmesg`); try a "
                          "smaller batch size, clip or fewer data-loader workers",
          signal.SIGSEGV: "a crash in native code", signal.SIGBUS: "often a full /dev/shm "
          "(data-loader workers' shared memory)", signal.SIGTERM: "stopped from outside the worker",
          signal.SIGINT: "interrupted from outside the worker"}


def exit_reason(rc: int, tail: str) -> str:
    """Why the trainer exited with ``rc``: the signal that killed it (or one of its torchrun
    ranks) with the likely cause, else its last ``error:`` line, else the status."""
    m = re.findall(r"exitcode\s*:\s*-(\d+)", tail)
    signum = -rc if rc < 0 else int(m[-1]) if m else None
    if signum:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        cause = CAUSES.get(signum)
        return f"trainer killed by {name} (signal {signum})" + (f": {cause}" if cause else "")
    return error_line(tail) or f"trainer exited with status {rc}"
