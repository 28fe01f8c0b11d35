"""Track a run that no queue worker starts (a multi-node ``torchrun``) in the run store.

Run on the node with rank 0 (it writes ``metrics.jsonl``)::

    python -m jobs.track --arch spec.json --data /shared/data --name big \\
        --hparams '{"epochs": 45, "batch_size": 8}' -- \\
        torchrun --nnodes=2 --node-rank=0 --nproc-per-node=8 \\
                 --rdzv-backend=c10d --rdzv-endpoint=NODE0:29500

It creates a ``running`` row, appends ``-m backend.train --arch --data --out RUN_DIR ...`` to
the launcher and supervises it like a queued run (metrics, checkpoints, heartbeat, cancel from
the app; a failure or a kill is recorded with its reason). The other nodes run the same
``torchrun ... -m backend.train`` command with their ``--node-rank``. ``retry_run`` later
resumes such a run on the queue (one node) from its last checkpoint.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from backend.csn.bounds import load_json
from db import RUNNING, SUCCEEDED, Run, runs_dir, utcnow, write

from .hparams import validate_hparams
from .liveness import worker_id
from .supervise import execute, train_threads


def _spec(arch: str) -> dict:
    from backend.csn import preset
    from backend.csn.loading import read_spec_file
    p = Path(arch)
    return (read_spec_file(p).spec if p.is_file() else preset(arch).validate()).to_dict()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.track", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True, help="spec .json file or preset name")
    p.add_argument("--data", required=True, help="dataset folder or CSV (as every node sees it)")
    p.add_argument("--name", default=None)
    p.add_argument("--hparams", default="{}", help="JSON object of TrainConfig fields")
    p.add_argument("launcher", nargs=argparse.REMAINDER, help="-- torchrun OPTIONS")
    a = p.parse_args(argv)
    launcher = a.launcher[1:] if a.launcher[:1] == ["--"] else a.launcher
    try:
        if not launcher:
            raise ValueError("give the launcher after --, e.g. -- torchrun --nnodes=2 ...")
        hp, spec = validate_hparams(load_json(a.hparams, "--hparams")), _spec(a.arch)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    hp.pop("gpus", None)
    data, now = str(Path(a.data).resolve()), utcnow()

    def create(s):
        r = Run(name=a.name, spec=spec, dataset=data, hparams=hp, status=RUNNING, attempts=1,
                worker_id=worker_id(), started_at=now, heartbeat_at=now, queued_at=now,
                threads=train_threads(hp), devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
        s.add(r)
        s.flush()
        r.output_dir = str(runs_dir() / f"run_{r.id:05d}")
        return r.id, r.output_dir
    rid, out = write(create)
    print(f"run {rid}: {out}", flush=True)
    job = {"spec": spec, "dataset": data, "hparams": hp, "out": out, "offset": 0, "devices": None,
           "nproc": 1, "threads": train_threads(hp), "launcher": launcher}
    status = execute(rid, job)
    print(f"run {rid}: {status}", flush=True)
    return 0 if status == SUCCEEDED else 1


if __name__ == "__main__":
    from backend.cli import run_cli
    sys.exit(run_cli(main))
