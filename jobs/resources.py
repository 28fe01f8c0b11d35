"""What a worker has (GPUs, CPU threads) and the admission rule for runs.

A worker's GPUs are ``CSN_GPUS`` (``0,1,2``; set it to test without GPUs), else
``CUDA_VISIBLE_DEVICES``, else the GPUs the NVIDIA driver lists; its CPU thread budget is
``CSN_THREADS``, else the cores it may run on. A run asks for ``gpus`` (None: 1 when the worker
has any, else 0) and ``threads``. It starts only when that fits what is free: GPUs are free when
no running run on this host holds them (so two workers on one host never share a GPU), threads
when this worker's running runs leave enough. The decision and the claim happen under one
host-wide file lock.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .executor import cluster_gpus


def parse_ids(s: str) -> list[str]:
    """``"0, 2"`` -> ``["0", "2"]`` (``-1`` and blanks mean none)."""
    return [x.strip() for x in s.split(",") if x.strip() and x.strip() != "-1"]


def worker_gpus() -> list[str]:
    """This worker's GPU ids (strings, as ``CUDA_VISIBLE_DEVICES`` takes them); for a Slurm
    worker, as many as one job may ask for (:func:`jobs.executor.cluster_gpus`)."""
    if os.environ.get("CSN_EXECUTOR", "").strip().lower() == "slurm":
        return cluster_gpus()
    for var in ("CSN_GPUS", "CUDA_VISIBLE_DEVICES"):
        if os.environ.get(var) is not None:
            return parse_ids(os.environ[var])
    # One folder per GPU the NVIDIA driver sees: counting them keeps the worker torch-free
    # (importing torch costs a worker ~300 MB and a second).
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        return []


def worker_threads() -> int:
    """This worker's CPU thread budget."""
    v = os.environ.get("CSN_THREADS")
    return max(1, int(v)) if v else len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Request:
    gpus: int
    threads: int

    def describe(self) -> str:
        g = f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}" if self.gpus else "CPU only"
        return f"{g}, {self.threads} thread{'s' if self.threads != 1 else ''}"


def resolve(gpus: int | None, threads: int, have_gpus: list[str]) -> Request:
    """The concrete request: ``gpus=None`` means 1 when the worker has GPUs, else 0."""
    return Request(gpus=(1 if have_gpus else 0) if gpus is None else int(gpus), threads=int(threads))


def fit(req: Request, gpus: list[str], threads: int, busy_gpus: set[str],
        busy_threads: int) -> tuple[list[str] | None, str]:
    """The devices for ``req`` (``[]`` for a CPU run), or None and why it must wait."""
    free = [g for g in gpus if g not in busy_gpus]
    if req.gpus > len(gpus) or req.threads > threads:
        return None, (f"waiting: asks for {req.describe()}, more than this worker has "
                      f"({len(gpus)} GPUs, {threads} threads)")
    if req.gpus > len(free):
        return None, f"waiting for {req.gpus} free GPUs ({len(free)} of {len(gpus)} free)"
    if req.threads > threads - busy_threads:
        return None, (f"waiting for {req.threads} CPU threads "
                      f"({max(0, threads - busy_threads)} of {threads} free)")
    return free[:req.gpus], ""


_local = threading.Lock()


@contextmanager
def host_lock() -> Iterator[None]:
    """Exclusive across this host's workers (and this process's threads)."""
    path = os.path.join(tempfile.gettempdir(), f"csn-explorer-alloc-{os.getuid()}.lock")
    with _local, open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
