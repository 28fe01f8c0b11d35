"""The Slurm executor against a real Slurm: a single-host cluster (munged, slurmctld, two
slurmd with one GRES GPU each, :mod:`tests.helpers.slurm_cluster`) and real ``huey_consumer`` workers
with ``CSN_EXECUTOR=slurm`` running tiny trainings as Slurm jobs."""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

import db
from tests.helpers.jobs import TINY_HP, tiny_spec, wait_for
from tests.helpers.slurm_cluster import Cluster, missing
from tests.test_jobs import consumers, dataset, env, jsonl_keys, num_classes  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = missing()
    if why:
        pytest.skip(why)
    c = Cluster(tmp_path_factory.mktemp("slurm")).start()
    yield c
    c.stop()


@pytest.fixture(autouse=True)
def no_jobs_left(cluster):
    """Every job of a test ends with it (a failed test must not hold the nodes)."""
    yield
    cluster.run("scancel", f"--user={os.getuid()}", check=False)


@pytest.fixture()
def start_worker(cluster, consumers):
    """Starts a Slurm-executor worker (3 threads: each follows one job) pointed at the cluster."""
    def start():
        w = consumers(3, SLURM_CONF=cluster.env["SLURM_CONF"], CSN_EXECUTOR="slurm",
                      CSN_SLURM_POLL_S="0.3", CSN_SLURM_GPUS_PER_NODE="1", CSN_SLURM_MAX_NODES="2",
                      CSN_SLURM_PARTITION="debug", CSN_SLURM_TIME="20")
        from jobs import api
        wait_for(lambda: api.worker_status()["alive"], 60, "worker heartbeat", w.text)
        return w
    return start


@pytest.fixture()
def worker(start_worker):
    return start_worker()


def run(run_id: int) -> dict:
    from jobs.api import get_run
    return get_run(run_id)


def stored_once(run_id: int) -> list[dict]:
    """The run's stored points, checked to be exactly the points its trainer wrote."""
    from jobs import api
    m = api.get_metrics(run_id)
    got = Counter((x["event"], x["split"], x["epoch"], x["step"], x["name"]) for x in m)
    assert set(got) == jsonl_keys(Path(run(run_id)["output_dir"])) and max(got.values()) == 1
    return m


def test_pending_reason_cancel_failure_and_success(cluster, worker, dataset, tmp_path):
    from jobs import api
    blocker = cluster.run("sbatch", "--parsable", "-N2", "--gres=gpu:1", f"--output={tmp_path}/blocker.out",
                          "--wrap", "sleep 300").stdout.strip()
    wait_for(lambda: cluster.job(blocker)["JobState"] == "RUNNING", 30, "the blocking job", cluster.logs)
    k = num_classes(dataset)
    good = api.enqueue_run(tiny_spec(k), str(dataset), {**TINY_HP, "epochs": 2}, gpus=1)
    gone = api.enqueue_run(tiny_spec(k), str(dataset), TINY_HP, gpus=1)
    too_big = api.enqueue_run(tiny_spec(k), str(dataset), TINY_HP, gpus=3)
    (tmp_path / "empty").mkdir()
    bad = api.enqueue_run(tiny_spec(k), str(tmp_path / "empty"), TINY_HP, gpus=0)   # fails in the trainer
    for rid in (good, gone):            # Slurm's reason once its scheduler has looked at the job
        wait_for(lambda rid=rid: (run(rid)["wait_reason"] or "").endswith((": Resources", ": Priority")),
                 60, f"run {rid} pending", worker.text)
    r = run(good)
    assert r["status"] == "queued" and cluster.job(r["slurm_job"])["JobState"] == "PENDING"
    assert r["wait_reason"].startswith(f"Slurm job {r['slurm_job']} pending: ")
    assert api.cancel_run(gone)
    gone_job = run(gone)["slurm_job"]
    wait_for(lambda: cluster.job(gone_job)["JobState"] == "CANCELLED", 30, "scancel of the cancelled run", worker.text)
    cluster.run("scancel", blocker)
    long = api.enqueue_run(tiny_spec(k), str(dataset), {**TINY_HP, "epochs": 40}, gpus=0)
    wait_for(lambda: run(long)["status"] == "running", 60, "the long run", worker.text)
    assert api.cancel_run(long)
    for rid in (good, bad):
        wait_for(lambda rid=rid: run(rid)["status"] in db.FINISHED, 120, f"run {rid}", worker.text)
    assert run(gone)["status"] == "cancelled"
    wait_for(lambda: run(long)["status"] in db.FINISHED, 60, "the cancelled running run", worker.text)
    assert run(long)["status"] == "cancelled" and cluster.job(run(long)["slurm_job"])["JobState"] == "CANCELLED"
    t = run(too_big)
    assert t["status"] == "failed" and t["error"] == "gpus: 3 GPUs need 3 nodes, more than CSN_SLURM_MAX_NODES=2"
    r = run(good)
    assert r["status"] == "succeeded", (r["error"], r["log_tail"], worker.text())
    assert r["nodes"] in ("n1", "n2") and r["attempts"] == 1 and r["progress"] == 1.0
    assert cluster.job(r["slurm_job"])["JobState"] == "COMPLETED"
    assert [c["epoch"] for c in r["checkpoints"]] == [1, 2]
    stored_once(good)
    f = run(bad)
    assert f["status"] == "failed" and f["error"].startswith(f"Slurm job {f['slurm_job']} FAILED"), f["error"]
    assert "exit code 1:0: " in f["error"] and "Traceback" not in f["error"]
    assert "gpu" not in cluster.job(f["slurm_job"]).get("TresPerNode", "")   # gpus=0: no GPU asked


def test_stop_signal_checkpoints_requeues_and_resumes_once(cluster, worker, dataset):
    from jobs import api
    rid = api.enqueue_run(tiny_spec(num_classes(dataset)), str(dataset), {**TINY_HP, "epochs": 40}, gpus=1)
    wait_for(lambda: run(rid)["status"] == "running" and run(rid)["checkpoints"], 90, "the first checkpoint", worker.text)
    job = run(rid)["slurm_job"]
    cluster.run("scancel", "--batch", "--signal=USR1", job)   # what --signal=B:USR1@N sends before the limit
    wait_for(lambda: cluster.job(job)["Restarts"] == "1", 60, "the requeue", worker.text)
    wait_for(lambda: run(rid)["status"] == "queued" and (run(rid)["wait_reason"] or "").endswith(": BeginTime"),
             30, "the run queued again, held by Slurm's ~2-min requeue delay", worker.text)
    time.sleep(3)           # slurmd refuses a launch credential from the second it revoked one in
    cluster.run("scontrol", "update", f"jobid={job}", "StartTime=now")   # end the hold early
    wait_for(lambda: run(rid)["status"] in db.FINISHED, 120, "the resumed run", worker.text)
    r = run(rid)
    assert r["status"] == "succeeded", (r["error"], r["log_tail"])
    assert r["attempts"] == 1 and r["slurm_job"] == job
    out = Path(r["output_dir"])
    starts = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"start"' in x]
    assert len(starts) == 2 and starts[1]["resumed_from"] and 0 < starts[1]["epoch"] < 40
    lines = Counter(x for x in (out / "metrics.jsonl").read_text().splitlines() if '"event": "epoch"' in x)
    assert max(lines.values()) == 1                                   # no epoch trained twice
    assert "checkpointed on the stop signal; requeueing" in (out / "train.log").read_text()
    m = stored_once(rid)
    assert [x["epoch"] for x in m if x["name"] == "video_top1" and x["split"] == "val"] == list(range(1, 41))


def test_two_node_run_through_srun_and_torchrun(cluster, worker, dataset):
    from jobs import api
    rid = api.enqueue_run(tiny_spec(num_classes(dataset)), str(dataset), {**TINY_HP, "epochs": 1}, gpus=2)
    wait_for(lambda: run(rid)["status"] in db.FINISHED, 180, "the two-node run", worker.text)
    r = run(rid)
    assert r["status"] == "succeeded", (r["error"], r["log_tail"])
    assert r["nodes"] == "n[1-2]" and cluster.job(r["slurm_job"])["NumNodes"] == "2"
    out = Path(r["output_dir"])
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["world_size"] == 2
    assert "--nnodes=2" in (out / "slurm_job.sh").read_text()
    stored_once(rid)


def test_job_of_a_dead_worker_is_adopted_and_a_killed_job_resumes_on_retry(cluster, start_worker, dataset):
    from jobs import api
    first = start_worker()
    rid = api.enqueue_run(tiny_spec(num_classes(dataset)), str(dataset), {**TINY_HP, "epochs": 40}, gpus=1)
    wait_for(lambda: run(rid)["status"] == "running" and run(rid)["checkpoints"], 90, "the first checkpoint", first.text)
    job = run(rid)["slurm_job"]
    first.kill()
    second = start_worker()                                   # reaps the dead worker's run
    wait_for(lambda: run(rid)["status"] == "crashed", 30, "the reaped run", second.text)
    assert cluster.job(job)["JobState"] == "RUNNING"          # the job went on without its worker
    assert api.retry_run(rid)
    wait_for(lambda: run(rid)["status"] == "running", 30, "the adopted job", second.text)
    assert run(rid)["slurm_job"] == job and run(rid)["attempts"] == 1   # followed, not resubmitted
    cluster.run("scancel", job)                   # killed from outside, as at its time limit
    wait_for(lambda: run(rid)["status"] in db.FINISHED, 60, "the killed job", second.text)
    r = run(rid)
    if r["status"] == "succeeded":
        pytest.fail("the 40-epoch run ended before it could be killed; the test needs a longer run")
    assert r["status"] == "failed" and r["error"].startswith(f"Slurm job {job} CANCELLED, exit code "), r["error"]
    assert api.retry_run(rid)                                  # one retry resumes it
    wait_for(lambda: run(rid)["status"] in db.FINISHED, 120, "the retried run", second.text)
    r = run(rid)
    assert r["status"] == "succeeded" and r["attempts"] == 2 and r["slurm_job"] != job, (r["error"], r["log_tail"])
    starts = [json.loads(x) for x in (Path(r["output_dir"]) / "metrics.jsonl").read_text().splitlines() if '"start"' in x]
    assert len(starts) == 2 and starts[1]["resumed_from"]
    m = stored_once(rid)
    assert [x["epoch"] for x in m if x["name"] == "video_top1" and x["split"] == "val"] == list(range(1, 41))
