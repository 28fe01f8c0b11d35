"""Which executor a worker uses (``CSN_EXECUTOR``: ``local`` starts trainers itself, ``slurm``
submits each run as a Slurm job, :mod:`jobs.slurm`) and the job shape limits a Slurm worker
reads from its environment."""
from __future__ import annotations

import os


def executor() -> str:
    """``local`` (default) or ``slurm``, from ``CSN_EXECUTOR``."""
    v = os.environ.get("CSN_EXECUTOR", "local").strip().lower() or "local"
    if v not in ("local", "slurm"):
        raise ValueError("CSN_EXECUTOR must be 'local' or 'slurm'")
    return v


def int_env(name: str, default: int, lo: int = 0, hi: int = 4096) -> int:
    """An integer setting from the environment, in [lo, hi]; ValueError naming it."""
    raw = os.environ.get(name, "").strip()
    try:
        v = int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}")
    return v


def cluster_gpus() -> list[str]:
    """GPU "ids" a Slurm worker advertises: one per GPU a single job may ask for."""
    per_node = int_env("CSN_SLURM_GPUS_PER_NODE", 1, 0, 64)
    return [str(i) for i in range(per_node * int_env("CSN_SLURM_MAX_NODES", 1, 1, 1024))]
