"""End to end: real ``huey_consumer jobs.tasks`` processes run tiny real trainings on a
generated dataset, against a real SQLite file. Success, bad input, cancel, SIGKILL + resume,
and two workers x twenty runs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import db
from backend.csn import SpecError
from tests.helpers.jobs import REPO, TINY_HP, Consumer, tiny_spec, wait_for
from tests.helpers.runs import seed_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """One tiny synthetic video dataset shared by every test here."""
    out = tmp_path_factory.mktemp("synth") / "data"
    subprocess.run([sys.executable, "-m", "backend.synth", "--out", str(out), "--per-class", "2",
                    "--splits", "train=0.5,val=0.5", "--seed", "0", "--size", "32", "--frames", "8"], cwd=REPO, check=True,
                   env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, timeout=300)
    return out


def num_classes(data: Path) -> int:
    return len([c for c in (data / "classes.txt").read_text().splitlines() if c.strip()])


@pytest.fixture()
def env(tmp_path, monkeypatch) -> dict[str, str]:
    """A fresh data dir (SQLite DB + queue) for this process and the consumers it starts."""
    vals = {"CSN_DATA_DIR": str(tmp_path / "var"), "CSN_HEARTBEAT_S": "0.5", "CSN_STALE_S": "20",
            "CSN_TRAIN_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
            "CSN_DATA_ROOTS": str(tmp_path.parent)}  # pytest base temp: these tests and the dataset
    for k, v in vals.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("HUEY_REDIS_URL", raising=False)
    db.dispose_engines()
    yield dict(os.environ)
    db.dispose_engines()


@pytest.fixture()
def consumers(env, tmp_path):
    """Factory ``start(workers, **extra_env)`` starting ``huey_consumer jobs.tasks`` processes;
    stops them all afterwards."""
    started: list[Consumer] = []

    def start(workers: int = 1, **extra: str) -> Consumer:
        c = Consumer({**env, **extra}, tmp_path / f"consumer{len(started)}.log", workers)
        started.append(c)
        return c
    start.logs = lambda: "\n".join(f"--- {c.log.name}\n{c.text()}" for c in started)  # type: ignore[attr-defined]
    yield start
    for c in started:
        c.stop()


def status(run_id: int) -> str:
    from jobs.api import get_run
    return get_run(run_id)["status"]


def jsonl_keys(run_dir: Path) -> set[tuple]:
    """Every metric point the trainer wrote, as unique keys."""
    keys = set()
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] in ("start", "checkpoint"):
            continue
        for k, v in ev["metrics"].items():
            if v == v:
                keys.add((ev["event"], ev["split"], ev["epoch"], ev["step"], k))
    return keys


def enqueue_unchecked(spec: dict, dataset: str, hparams: dict) -> int:
    """A queued run written straight to the store (an older app, another client): the
    worker must validate it itself."""
    from jobs import api
    from jobs.hparams import validate_hparams
    rid = seed_run(spec=spec, dataset=dataset, hparams=validate_hparams(hparams), status=db.QUEUED,
                   queued_at=db.utcnow(), threads=1)
    api.enqueue_task(rid)
    return rid


def test_success_bad_spec_missing_data_and_worker_stays_up(dataset, consumers, tmp_path):
    from jobs import api
    w = consumers()
    wait_for(lambda: api.worker_status()["alive"], 60, "worker heartbeat", w.text)
    k = num_classes(dataset)
    bad_spec = {**tiny_spec(k), "stages": [{"width": 8, "inner": 4, "groups": 3, "block": "bottleneck-G"}] * 4}
    with pytest.raises(SpecError, match="not divisible by 3 groups"):
        api.enqueue_run(bad_spec, str(dataset), TINY_HP)               # refused at enqueue
    bad = enqueue_unchecked(bad_spec, str(dataset), TINY_HP)            # a row that skipped it
    huge = enqueue_unchecked({**tiny_spec(k), "stages": [{"blocks": 10**18}] * 4}, str(dataset), TINY_HP)
    missing = api.enqueue_run(tiny_spec(k), str(tmp_path / "no-such-data"), TINY_HP)
    (tmp_path / "empty").mkdir()
    empty = api.enqueue_run(tiny_spec(k), str(tmp_path / "empty"), TINY_HP)   # fails inside the trainer
    good = api.enqueue_run(tiny_spec(k), str(dataset), {**TINY_HP, "epochs": 2, "max_steps_per_epoch": 2},
                           name="ok")
    wait_for(lambda: status(good) in db.FINISHED, 120, "the good run", w.text)
    runs = {r["id"]: r for r in api.list_runs()}
    assert runs[bad]["status"] == "failed" and "invalid architecture" in runs[bad]["error"]
    assert "not divisible by 3 groups" in runs[bad]["error"]
    assert runs[huge]["status"] == "failed" and "blocks" in runs[huge]["error"]   # bounded, then on
    assert runs[missing]["status"] == "failed" and "dataset not found" in runs[missing]["error"]
    assert runs[empty]["status"] == "failed" and runs[empty]["error"], runs[empty]
    assert "error:" in runs[empty]["log_tail"] and "Traceback" not in runs[empty]["error"]
    r = api.get_run(good)
    assert r["status"] == "succeeded", (r["error"], r["log_tail"], w.text())
    assert w.proc.poll() is None                                # the worker stayed up
    assert r["progress"] == 1.0 and r["epoch"] == 2 and r["total_epochs"] == 2 and r["attempts"] == 1
    assert r["best_val_video_top1"] is not None and r["started_at"] <= r["finished_at"]
    assert [c["epoch"] for c in r["checkpoints"]] == [1, 2]
    assert all(Path(c["path"]).exists() for c in r["checkpoints"])
    m = api.get_metrics(good)
    got = {(x["event"], x["split"], x["epoch"], x["step"], x["name"]) for x in m}
    assert got == jsonl_keys(Path(r["output_dir"])) and len(got) == len(m)
    assert [x["step"] for x in api.get_metrics(good, name="loss", event="step")] == [1, 2, 3, 4]
    assert {x["epoch"] for x in api.get_metrics(good, name="video_top1", split="val")} == {1, 2}
    assert api.get_metrics(good, since_id=max(x["id"] for x in m)) == []


def test_cancel_running_run(dataset, consumers):
    from jobs import api
    w = consumers()
    rid = api.enqueue_run(tiny_spec(num_classes(dataset)), str(dataset),
                          {**TINY_HP, "epochs": 50, "max_steps_per_epoch": 20, "eval_clips": 1})
    wait_for(lambda: api.get_run(rid)["step"] >= 2, 90, "training steps", w.text)
    pid = api.get_run(rid)["pid"]
    assert pid and os.path.exists(f"/proc/{pid}")
    assert api.cancel_run(rid)
    wait_for(lambda: status(rid) == "cancelled", 15, "cancellation", w.text)
    from jobs.liveness import pid_alive
    wait_for(lambda: not pid_alive(pid), 10, "the trainer to exit")
    r = api.get_run(rid)
    assert r["step"] < r["total_steps"] and r["error"] is None and r["finished_at"]
    assert w.proc.poll() is None
    # a worker stopped with SIGTERM mid-run: its trainer is stopped and the run marked crashed
    rid2 = api.enqueue_run(tiny_spec(num_classes(dataset)), str(dataset),
                           {**TINY_HP, "epochs": 50, "max_steps_per_epoch": 20})
    wait_for(lambda: api.get_run(rid2)["step"] >= 1, 90, "training steps", w.text)
    pid2 = api.get_run(rid2)["pid"]
    w.stop()
    r = api.get_run(rid2)
    assert r["status"] == "crashed" and "worker shut down" in r["error"], (r, w.text())
    assert not pid_alive(pid2) and not api.worker_status()["alive"]


def test_sigkill_worker_then_retry_resumes_without_losing_metrics(dataset, consumers):
    from jobs import api
    from jobs.liveness import pid_alive
    w = consumers()
    rid = api.enqueue_run(tiny_spec(num_classes(dataset)), str(dataset),
                          {**TINY_HP, "epochs": 30, "max_steps_per_epoch": 3})
    wait_for(lambda: len(api.get_run(rid)["checkpoints"]) >= 1 and status(rid) == "running", 120,
             "a first checkpoint", w.text, every=0.05)
    trainer = api.get_run(rid)["pid"]
    w.kill(signal.SIGKILL)
    assert pid_alive(trainer)                      # orphaned in its own process group
    w2 = consumers()                               # the next worker reaps the dead one's run
    wait_for(lambda: status(rid) == "crashed", 30, "crash detection", w2.text)
    wait_for(lambda: not pid_alive(trainer), 10, "the orphaned trainer to be killed")
    r = api.get_run(rid)
    assert "retry resumes" in r["error"] and 1 <= r["epoch"] < 30, r   # stopped mid-run
    first_lines = len((Path(r["output_dir"]) / "metrics.jsonl").read_text().splitlines())
    before = {(x["event"], x["split"], x["epoch"], x["step"], x["name"]): x["value"] for x in api.get_metrics(rid)}
    assert api.retry_run(rid)
    wait_for(lambda: status(rid) in db.FINISHED, 120, "the retried run", w2.text)
    r = api.get_run(rid)
    assert r["status"] == "succeeded", (r["error"], r["log_tail"])
    assert r["attempts"] == 2 and r["epoch"] == 30
    starts = [ln for ln in (Path(r["output_dir"]) / "train.log").read_text().splitlines() if ln.startswith("$ ")]
    assert len(starts) == 2 and "--resume" not in starts[0] and starts[1].endswith("--resume")
    lines = (Path(r["output_dir"]) / "metrics.jsonl").read_text().splitlines()
    resumed = json.loads(next(ln for ln in lines[first_lines:] if '"start"' in ln))
    assert 1 <= resumed["epoch"] < 30                 # the second attempt began at a checkpoint
    m = api.get_metrics(rid)
    keys = [(x["event"], x["split"], x["epoch"], x["step"], x["name"]) for x in m]
    assert not [k for k, n in Counter(keys).items() if n > 1]          # nothing duplicated
    assert set(keys) == jsonl_keys(Path(r["output_dir"]))             # nothing lost
    assert all(dict(zip(keys, (x["value"] for x in m)))[k] == v for k, v in before.items())
    assert {x["epoch"] for x in api.get_metrics(rid, event="epoch", split="val")} == set(range(1, 31))
    assert [c["epoch"] for c in r["checkpoints"]][-1] == 30


def test_two_workers_twenty_runs(dataset, consumers):
    from jobs import api
    ws = [consumers(1), consumers(1)]
    logs = lambda: "\n".join(w.text() for w in ws)  # noqa: E731
    spec = tiny_spec(num_classes(dataset))
    hp = {**TINY_HP, "val_fraction": 0}                 # train split only: no evaluation pass
    ids = [api.enqueue_run(spec, str(dataset / "train"), hp, name=f"c{i}") for i in range(20)]
    wait_for(lambda: all(r["status"] in db.FINISHED for r in api.list_runs() if r["id"] in ids), 400,
             "twenty runs", logs, every=1.0)
    runs = [api.get_run(i) for i in ids]
    assert [r["status"] for r in runs] == ["succeeded"] * 20, [(r["id"], r["error"]) for r in runs]
    assert len({r["worker_id"] for r in runs}) == 2                   # both workers took runs
    assert all(api.get_metrics(r["id"], name="loss", event="step") for r in runs)
    assert "database is locked" not in logs().lower()
    assert all(w.proc.poll() is None for w in ws)
