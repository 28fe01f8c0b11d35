"""The Slurm executor's configuration without a cluster: job shape from a run's request within
the worker's limits, the ``sbatch`` options, the batch script, and one-line config errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from jobs import slurm


@pytest.fixture()
def limits(monkeypatch):
    for k in ("CSN_SLURM_PARTITION", "CSN_SLURM_ACCOUNT", "CSN_SLURM_QOS", "CSN_SLURM_TIME",
              "CSN_SLURM_OPTIONS", "CSN_SLURM_SIGNAL_S"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("CSN_SLURM_GPUS_PER_NODE", "4")
    monkeypatch.setenv("CSN_SLURM_MAX_NODES", "2")
    monkeypatch.setenv("CSN_SLURM_MAX_THREADS", "16")
    return monkeypatch


def test_layout_spans_nodes_only_within_limits(limits):
    from jobs.resources import worker_gpus
    limits.setenv("CSN_EXECUTOR", "slurm")
    assert len(worker_gpus()) == 8          # what the Train page offers: 4 per node x 2 nodes
    assert slurm.layout(None, 2) == (1, 1, 2)
    assert slurm.layout(0, 1) == (1, 0, 1)
    assert slurm.layout(4, 8) == (1, 4, 8)
    assert slurm.layout(8, 8) == (2, 4, 8)
    with pytest.raises(ValueError, match=r"^gpus: 12 GPUs need 3 nodes, more than CSN_SLURM_MAX_NODES=2$"):
        slurm.layout(12, 1)
    with pytest.raises(ValueError, match="multiple of CSN_SLURM_GPUS_PER_NODE=4"):
        slurm.layout(6, 1)
    with pytest.raises(ValueError, match="^threads: 32 is more than this worker allows"):
        slurm.layout(1, 32)
    limits.setenv("CSN_SLURM_MAX_NODES", "lots")
    with pytest.raises(ValueError, match="^CSN_SLURM_MAX_NODES must be an integer$"):
        slurm.layout(1, 1)


def test_sbatch_options_carry_worker_settings(limits, tmp_path):
    limits.setenv("CSN_SLURM_PARTITION", "gpu")
    limits.setenv("CSN_SLURM_ACCOUNT", "vision")
    limits.setenv("CSN_SLURM_QOS", "normal")
    limits.setenv("CSN_SLURM_TIME", "04:00:00")
    limits.setenv("CSN_SLURM_SIGNAL_S", "300")
    limits.setenv("CSN_SLURM_OPTIONS", "--constraint=a100 --mem=64G")
    opts = slurm.sbatch_options(7, tmp_path, 2, 4, 8)
    for o in ("--job-name=csn-run-7", "--nodes=2", "--gres=gpu:4", "--cpus-per-task=8", "--requeue",
              "--signal=B:USR1@300", "--partition=gpu", "--account=vision", "--qos=normal",
              "--time=04:00:00", "--constraint=a100", "--mem=64G", f"--output={tmp_path / 'train.log'}"):
        assert o in opts
    assert not any(o.startswith("--gres") for o in slurm.sbatch_options(7, tmp_path, 1, 0, 1))
    limits.setenv("CSN_SLURM_PARTITION", "gpu; rm -rf /")
    with pytest.raises(ValueError, match="^CSN_SLURM_PARTITION has characters Slurm does not take$"):
        slurm.sbatch_options(7, tmp_path, 1, 0, 1)
    limits.setenv("CSN_SLURM_PARTITION", "gpu")
    limits.setenv("CSN_SLURM_OPTIONS", "--comment='open")
    with pytest.raises(ValueError, match="^CSN_SLURM_OPTIONS is not valid shell words$"):
        slurm.sbatch_options(7, tmp_path, 1, 0, 1)


def test_batch_script_launches_per_node_torchrun(limits, tmp_path):
    job = {"spec": {}, "dataset": "/data", "hparams": {"epochs": 2}, "out": str(tmp_path),
           "devices": None, "nproc": 4, "threads": 8}
    multi = slurm.batch_script(job, tmp_path, nodes=2)
    assert "srun --kill-on-bad-exit=1" in multi and "--nnodes=2" in multi and "--nproc_per_node=4" in multi
    assert '--rdzv-endpoint="$addr:$port"' in multi and "--threads 2" in multi
    single = slurm.batch_script({**job, "nproc": 1}, tmp_path, nodes=1)
    assert "srun" not in single and "torch.distributed.run" not in single
    assert "kill -USR1 $child" in single and "kill -USR1" not in multi   # only one process stops alone
    assert "--epochs=2" in single
    assert f"-eq {slurm.RESUME_EXIT} ]" in single and "scontrol requeue" in single


def test_resume_exit_matches_the_trainer_and_executor_is_checked(monkeypatch):
    from backend.train import RESUME_EXIT
    assert slurm.RESUME_EXIT == RESUME_EXIT
    monkeypatch.setenv("CSN_EXECUTOR", "kubernetes")
    with pytest.raises(ValueError, match="^CSN_EXECUTOR must be 'local' or 'slurm'$"):
        slurm.executor()
    monkeypatch.delenv("CSN_EXECUTOR")
    assert slurm.executor() == "local"


def test_runs_page_shows_job_and_nodes_or_pending_reason():
    from app.runs_data import devices_label
    assert devices_label({"status": "running", "slurm_job": "12", "nodes": "n[1-2]", "devices": None}) \
        == "Slurm job 12 on n[1-2]"
    assert devices_label({"status": "queued", "slurm_job": "12",
                          "wait_reason": "Slurm job 12 pending: Resources"}) == "Slurm job 12 pending: Resources"
    assert devices_label({"status": "running", "devices": "0,1"}) == "GPU 0,1"
