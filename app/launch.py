"""Start every process of the Procfile together (``make run``) and stop them together.

A tiny honcho: each ``name: command`` line runs in its own process group with the venv's
``bin`` first on PATH; output is prefixed with the process name; Ctrl-C (or one process
exiting) stops them all.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    procs: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, cmd = line.split(":", 1)
            procs[name.strip()] = cmd.strip()
    return procs


def _pump(name: str, stream) -> None:
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>7} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


def main(only: list[str] | None = None) -> int:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    env.setdefault("PYTHONUNBUFFERED", "1")
    procs = {k: v for k, v in read_procfile().items() if not only or k in only}
    running: dict[str, subprocess.Popen] = {}
    for name, cmd in procs.items():
        p = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        running[name] = p
        threading.Thread(target=_pump, args=(name, p.stdout), daemon=True).start()
        print(f"started {name} (pid {p.pid}): {cmd}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    code = 0
    while not stop.is_set():
        for name, p in running.items():
            if p.poll() is not None:
                print(f"{name} exited with {p.returncode}; stopping the others", flush=True)
                code = p.returncode or 0
                stop.set()
                break
        time.sleep(0.5)
    for p in running.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + 10
    for p in running.values():
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or None))
