"""A resource-aware queue and a run store that never reports a lie.

Real ``huey_consumer jobs.tasks`` processes with ``CSN_GPUS=0,1,2`` (trainers on CPU) run tiny
trainings against a real SQLite file; the last test runs on a real redis-server and PostgreSQL.
"""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

import db
from backend.paths import data_dir
from tests.helpers.jobs import TINY_HP, Consumer, postgres_server, redis_server, tiny_spec, wait_for
from tests.test_jobs import consumers, dataset, env, jsonl_keys, num_classes  # noqa: F401  (fixtures)
from tests.test_jobs import status as _status

LONG = {**TINY_HP, "epochs": 50, "max_steps_per_epoch": 20}
FOREVER = {**LONG, "epochs": 5000}          # runs until stopped


@pytest.fixture()
def start(consumers):
    """``start(workers, **env)``: test_jobs' consumer factory under this module's name."""
    return consumers


def _cuda_env(pid: int | None) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        return env.get(b"CUDA_VISIBLE_DEVICES", b"<unset>").decode()
    except OSError:
        return None


def _max_overlap(runs: list[dict]) -> int:
    ev = sorted([(r["started_at"], 1) for r in runs] + [(r["finished_at"], -1) for r in runs])
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


# --- fast: no consumer -----------------------------------------------------------------------
def test_fit_rule(monkeypatch):
    from jobs.resources import Request, fit, resolve, worker_gpus
    assert resolve(None, 1, ["0"]) == Request(1, 1) and resolve(None, 2, []) == Request(0, 2)
    assert fit(Request(2, 1), ["0", "1", "2"], 4, {"1"}, 0) == (["0", "2"], "")
    devs, why = fit(Request(2, 1), ["0", "1", "2"], 4, {"0", "1"}, 0)
    assert devs is None and why == "waiting for 2 free GPUs (1 of 3 free)"
    assert fit(Request(0, 3), ["0"], 4, set(), 2)[1] == "waiting for 3 CPU threads (2 of 4 free)"
    assert "more than this worker has" in fit(Request(4, 1), ["0", "1", "2"], 4, set(), 0)[1]
    monkeypatch.setenv("CSN_GPUS", "0, 2,3")
    assert worker_gpus() == ["0", "2", "3"]
    monkeypatch.setenv("CSN_GPUS", "")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert worker_gpus() == []
    monkeypatch.delenv("CSN_GPUS")
    assert worker_gpus() == ["5"]


def test_hparams_are_train_config_fields_and_never_paths(env, tmp_path):  # noqa: F811
    from jobs import api
    from jobs.supervise import supervise
    spec = tiny_spec()
    for bad, why in (({"out": "/elsewhere"}, "'out' is set by the worker"),
                     ({"data": "/x"}, "'data' is set by the worker"),
                     ({"arch": "ir-csn-26"}, "'arch'"), ({"resume": True}, "'resume'"),
                     ({"bogus": 1}, "unknown hyper-parameter 'bogus'"),
                     ({"epochs": "3"}, "epochs must be int"), ({"threads": 0}, "threads must be"),
                     ({"gpus": -1}, "gpus must be")):
        with pytest.raises(ValueError, match=why):
            api.enqueue_run(spec, str(tmp_path), bad)
    assert api.list_runs() == []                               # nothing was queued
    rid = api.enqueue_run(spec, str(tmp_path), {"epochs": 2, "lr": 0.1, "gpus": 0, "amp": "bf16"})
    r = api.get_run(rid)
    assert r["hparams"] == {"epochs": 2, "lr": 0.1, "amp": "bf16"} and r["gpus"] == 0
    from jobs.hparams import hparam_args
    assert hparam_args({"progress": False, "threads": 2, "gpus": 1}) == ["--no-progress"]
    # a row written around the API (an older client, say) is refused by the worker
    db.write(lambda s: setattr(s.get(db.Run, rid), "hparams", {"epochs": 1, "out": "/elsewhere"}))
    assert supervise(rid) == "failed"
    r = api.get_run(rid)
    assert "'out' is set by the worker" in r["error"] and not Path("/elsewhere").exists()


def test_exit_reason_names_the_signal_and_cause():
    from jobs.supervise import exit_reason
    assert exit_reason(-9, "") == ("trainer killed by SIGKILL (signal 9): most likely the kernel's "
                                   "out-of-memory killer (see `dmesg`); try a smaller batch size, "
                                   "clip or fewer data-loader workers")
    torchrun_tail = "[rank1]: ...\n  exitcode  : -9 (pid: 123)\n  error_file: <N/A>\n"
    assert exit_reason(1, torchrun_tail).startswith("trainer killed by SIGKILL (signal 9)")
    assert exit_reason(1, "x\nerror: no readable clips\n") == "no readable clips"
    assert exit_reason(-11, "").startswith("trainer killed by SIGSEGV (signal 11): a crash")


def test_older_database_gets_the_new_columns(env, tmp_path):  # noqa: F811
    from jobs import api
    rid = api.enqueue_run(tiny_spec(), str(tmp_path / "nowhere"), {"epochs": 1})
    db.dispose_engines()
    path = data_dir() / "csn.db"
    with sqlite3.connect(path) as c:          # the previous version's schema had none of these
        for col in ("gpus", "threads", "devices", "wait_reason", "queued_at"):
            c.execute(f"ALTER TABLE runs DROP COLUMN {col}")
        c.execute("ALTER TABLE workers DROP COLUMN gpus")
    r = api.get_run(rid)
    assert r["status"] == "queued" and r["devices"] is None and r["gpus"] is None
    with sqlite3.connect(path) as c:
        cols = {row[1] for row in c.execute("PRAGMA table_info(runs)")}
    assert {"gpus", "threads", "devices", "wait_reason", "queued_at"} <= cols


def _damage(path: Path) -> None:
    """Overwrite the middle of an SQLite file with garbage (the header page stays intact)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(bytes((i * 37 + 11) % 256 for i in range(size - 8192)))


@pytest.mark.slow
def test_damaged_database_is_a_clear_error_everywhere(env, start, tmp_path):  # noqa: F811
    from jobs import api
    from streamlit.testing.v1 import AppTest
    nowhere = str(tmp_path / "nowhere")
    for i in range(150):
        api.enqueue_run(tiny_spec(), nowhere, {"epochs": 1}, name=f"r{i}" * 20)
    db.dispose_engines()
    path = data_dir() / "csn.db"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _damage(path)
    with pytest.raises(Exception, match="the run database .* is damaged") as e:
        api.enqueue_run(tiny_spec(), nowhere, {"epochs": 1})
    assert isinstance(e.value, db.StoreError)
    problem = db.check_database()
    assert problem and "is damaged" in problem and "move the file aside" in problem
    w = start()                                      # a worker refuses to idle on it
    assert w.proc.wait(60) == 3, w.text()
    assert "error: worker cannot start: the run database" in w.text() and "is damaged" in w.text()
    main = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
    at = AppTest.from_file(main, default_timeout=60)
    at.run()
    assert not at.exception
    at.switch_page(str(Path(main).parent / "views" / "train.py")).run()
    assert not at.exception and len(at.error) == 1 and "is damaged" in at.error[0].value


def test_misconfigured_queue_gives_one_banner_and_the_builder_still_works(env, monkeypatch):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    from tests.helpers.jobs import free_port
    monkeypatch.setenv("HUEY_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")   # nothing there
    main = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
    at = AppTest.from_file(main, default_timeout=60)
    at.run()
    assert not at.exception and not at.error                 # the Builder works
    at.text_input(key="bld_name").set_value("x").run()
    [b for b in at.button if b.label == "Save architecture"][0].click().run()
    assert not at.exception
    for page in ("train", "runs"):
        at.switch_page(str(Path(main).parent / "views" / f"{page}.py")).run()
        assert not at.exception and len(at.error) == 1, [e.value for e in at.error]
        assert "cannot reach the job queue (Redis at HUEY_REDIS_URL=redis://127.0.0.1" in at.error[0].value


def test_train_page_shows_inventory_and_asks_for_gpus_runs_show_devices(env, dataset, tmp_path):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    from jobs import api
    from jobs.liveness import worker_id
    db.write(lambda s: s.add(db.Worker(id=worker_id(), hostname="h", pid=os.getpid(),   # alive: us
                                       gpus="0,1,2", threads=4)))
    spec = tiny_spec()
    busy = api.enqueue_run(spec, str(tmp_path), {"epochs": 1}, gpus=1)
    db.write(lambda s: [setattr(s.get(db.Run, busy), k, v) for k, v in
                        (("status", "running"), ("devices", "1"), ("worker_id", worker_id()),
                         ("heartbeat_at", db.utcnow()))])
    waiting = api.enqueue_run(spec, str(tmp_path), {"epochs": 1}, gpus=3)
    db.write(lambda s: setattr(s.get(db.Run, waiting), "wait_reason", "waiting for 3 free GPUs (2 of 3 free)"))
    main = Path(__file__).resolve().parent.parent / "app" / "main.py"
    at = AppTest.from_file(str(main), default_timeout=60)
    at.run()
    at.switch_page(str(main.parent / "views" / "train.py")).run()
    assert not at.exception
    assert at.success, [w.value for w in at.warning]
    inv = at.dataframe[0].value
    assert list(inv["GPUs"]) == ["0,1,2"] and list(inv["GPUs busy"]) == ["1"]
    assert list(inv["runs"]) == [f"#{busy}"] and "1 waiting for resources" in at.success[0].value
    assert at.selectbox(key="hp_gpus").options == ["auto", "0", "1", "2", "3"]
    at.selectbox(key="hp_gpus").set_value(2).run()
    at.radio(key="train_dsrc").set_value("A folder or CSV on the server").run()
    at.text_input(key="train_path").set_value(str(dataset)).run()   # a readable dataset: enqueue is on
    [b for b in at.button if b.label == "Enqueue run"][0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert api.list_runs()[0]["gpus"] == 2 and "gpus" not in api.list_runs()[0]["hparams"]
    at.switch_page(str(main.parent / "views" / "runs.py")).run()
    devs = dict(zip(at.dataframe[0].value["id"], at.dataframe[0].value["devices"]))
    assert devs[busy] == "GPU 1" and devs[waiting].startswith("waiting for 3 free GPUs")


# --- real consumers ------------------------------------------------------------------------------
@pytest.mark.slow
def test_gpu_slots_six_one_gpu_runs_on_three_gpus(dataset, start):  # noqa: F811
    from jobs import api
    w = start(6, CSN_GPUS="0,1,2", CSN_THREADS="6")
    spec, hp = tiny_spec(num_classes(dataset)), {**TINY_HP, "val_fraction": 0}
    ids = [api.enqueue_run(spec, str(dataset / "train"), hp, gpus=1, name=f"g{i}") for i in range(6)]
    seen: dict[int, set[str | None]] = {}

    def watch() -> bool:
        runs = [r for r in api.list_runs() if r["id"] in ids]
        live = [r for r in runs if r["status"] == "running"]
        assert len(live) <= 3, live
        assert len({r["devices"] for r in live}) == len(live)          # never a shared GPU
        for r in live:
            seen.setdefault(r["id"], set()).add(_cuda_env(r["pid"]) if r["pid"] else None)
        return all(r["status"] in db.FINISHED for r in runs)
    wait_for(watch, 240, "six runs", w.text, every=0.1)
    runs = [api.get_run(i) for i in ids]
    assert [r["status"] for r in runs] == ["succeeded"] * 6, [(r["id"], r["error"]) for r in runs]
    assert {r["devices"] for r in runs} <= {"0", "1", "2"} and _max_overlap(runs) <= 3
    for r in runs:                          # the trainer itself had exactly its device
        assert seen.get(r["id"], set()) - {None} <= {r["devices"]}, (r["id"], seen)
    assert any(seen.get(r["id"], set()) - {None} for r in runs)
    assert api.worker_status()["workers"][0]["gpus"] == ["0", "1", "2"]


@pytest.mark.slow
def test_two_gpu_run_waits_for_two_free_devices_and_runs_two_ranks(dataset, start):  # noqa: F811
    from jobs import api
    w = start(3, CSN_GPUS="0,1,2", CSN_THREADS="4")
    spec, data = tiny_spec(num_classes(dataset)), str(dataset / "train")   # no evaluation passes
    one = {**TINY_HP, "val_fraction": 0, "epochs": 4, "max_steps_per_epoch": 3}
    a = api.enqueue_run(spec, data, one, gpus=1)
    b = api.enqueue_run(spec, data, one, gpus=1)
    wait_for(lambda: _status(a) == _status(b) == "running", 60, "two 1-GPU runs", w.text)
    c = api.enqueue_run(spec, data, {**one, "epochs": 2, "threads": 2}, gpus=2, name="ddp")
    wait_for(lambda: api.get_run(c)["wait_reason"], 30, "the 2-GPU run to say it waits", w.text)
    r = api.get_run(c)
    assert r["status"] == "queued" and "waiting for 2 free GPUs (1 of 3 free)" in r["wait_reason"]
    assert api.worker_status()["waiting"] == 1
    wait_for(lambda: all(_status(i) in db.FINISHED for i in (a, b, c)), 240, "three runs", w.text)
    ra, rb, rc = api.get_run(a), api.get_run(b), api.get_run(c)
    assert [x["status"] for x in (ra, rb, rc)] == ["succeeded"] * 3, [x["error"] for x in (ra, rb, rc)]
    assert rc["started_at"] >= min(ra["finished_at"], rb["finished_at"])
    assert len(set(rc["devices"].split(","))) == 2 and set(rc["devices"].split(",")) <= {"0", "1", "2"}
    assert rc["wait_reason"] is None and rc["threads"] == 2
    out = Path(rc["output_dir"])
    log = (out / "train.log").read_text()
    assert "torch.distributed.run --standalone --nproc_per_node=2" in log
    start_ev = [ln for ln in (out / "metrics.jsonl").read_text().splitlines() if '"start"' in ln]
    assert len(start_ev) == 1 and '"world_size": 2' in start_ev[0]       # rank 0 writes, once
    m = api.get_metrics(c)
    keys = [(x["event"], x["split"], x["epoch"], x["step"], x["name"]) for x in m]
    assert len(keys) == len(set(keys)) and set(keys) == jsonl_keys(out)


@pytest.mark.slow
def test_lost_queue_message_is_reconciled_and_retry_accepts_it(dataset, start):  # noqa: F811
    from jobs import api
    from jobs.queue import sync_storage
    spec, hp = tiny_spec(num_classes(dataset)), {**TINY_HP, "val_fraction": 0}
    a = api.enqueue_run(spec, str(dataset / "train"), hp)
    b = api.enqueue_run(spec, str(dataset / "train"), hp)
    sync_storage().flush()                                    # both queue messages are gone
    assert api.retry_run(b)                                   # a queued orphan is accepted
    w = start(1, CSN_RECONCILE_S="1")
    wait_for(lambda: _status(a) in db.FINISHED and _status(b) in db.FINISHED, 120,
             "both runs", w.text)
    assert (_status(a), _status(b)) == ("succeeded", "succeeded"), api.get_run(a)["error"]


@pytest.mark.slow
def test_trainer_killed_by_the_kernel_names_the_signal(dataset, start):  # noqa: F811
    from jobs import api
    w = start()
    rid = api.enqueue_run(tiny_spec(num_classes(dataset)), str(dataset), LONG)
    wait_for(lambda: api.get_run(rid)["step"] >= 1, 90, "training steps", w.text)
    os.kill(api.get_run(rid)["pid"], signal.SIGKILL)          # as the kernel's OOM killer does
    wait_for(lambda: _status(rid) in db.FINISHED, 30, "the run to end", w.text)
    r = api.get_run(rid)
    assert r["status"] == "failed" and "killed by SIGKILL (signal 9)" in r["error"], r["error"]
    assert "out-of-memory" in r["error"] and w.proc.poll() is None


def test_worker_status_uses_the_reapers_liveness_rule(env):  # noqa: F811
    import subprocess
    import sys

    from jobs import api
    from jobs.liveness import HOST
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    db.write(lambda s: s.add(db.Worker(id=f"{HOST}:{gone.pid}", hostname=HOST, pid=gone.pid)))
    ws = api.worker_status()                  # its heartbeat is fresh, but its pid is dead
    assert not ws["alive"] and not any(w["alive"] for w in ws["workers"])


@pytest.mark.slow
def test_new_worker_stops_an_orphaned_trainer(dataset, start):  # noqa: F811
    from jobs import api
    from jobs.liveness import pid_alive
    w1 = start()
    rid = api.enqueue_run(tiny_spec(num_classes(dataset)), str(dataset), FOREVER)
    wait_for(lambda: api.get_run(rid)["step"] >= 1, 90, "training steps", w1.text)
    trainer, w1_id = api.get_run(rid)["pid"], api.get_run(rid)["worker_id"]
    w1.kill(signal.SIGKILL)
    # marked crashed by someone who could not stop the trainer (a reaper on another host)
    db.write(lambda s: setattr(s.get(db.Run, rid), "status", "crashed"))
    assert pid_alive(trainer)
    w2 = start()
    wait_for(lambda: not pid_alive(trainer) and api.get_run(rid)["pid"] is None, 20,
             "the new worker to stop the orphaned trainer", w2.text)
    ws = api.worker_status()
    assert ws["alive"] and w1_id not in [x["id"] for x in ws["workers"] if x["alive"]]
    w2.kill(signal.SIGKILL)
    assert not api.worker_status()["alive"]                   # at once, not after CSN_STALE_S


@pytest.mark.slow
def test_tracked_torchrun_reports_into_the_store(dataset, env, tmp_path):  # noqa: F811
    """The multi-node recipe's launcher path (c10d rendezvous, here with one node)."""
    import json
    import subprocess
    import sys

    from jobs import api
    from tests.helpers.jobs import REPO, free_port
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(tiny_spec(num_classes(dataset))))
    hp = {**TINY_HP, "epochs": 2, "max_steps_per_epoch": 2}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    p = subprocess.run([sys.executable, "-m", "jobs.track", "--arch", str(spec), "--data", str(dataset),
                        "--name", "multi", "--hparams", json.dumps(hp), "--", torchrun, "--nnodes=1",
                        "--node-rank=0", "--nproc-per-node=1", "--rdzv-backend=c10d",
                        f"--rdzv-endpoint=127.0.0.1:{free_port()}"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    (r,) = api.list_runs()
    assert (r["name"], r["status"], r["epoch"], r["attempts"]) == ("multi", "succeeded", 2, 1)
    assert p.stdout.splitlines()[0] == f"run {r['id']}: {r['output_dir']}"
    assert "--rdzv-endpoint" in (Path(r["output_dir"]) / "train.log").read_text()
    assert {(x["event"], x["split"], x["epoch"], x["step"], x["name"]) for x in api.get_metrics(r["id"])} \
        == jsonl_keys(Path(r["output_dir"]))


@pytest.mark.slow
def test_dataset_deleted_mid_run_fails_the_run(dataset, start, tmp_path):  # noqa: F811
    from jobs import api
    data = Path(shutil.copytree(dataset, tmp_path / "data"))
    # no frame cache: it would keep the deleted videos in memory (and rightly succeed)
    hp = {**TINY_HP, "epochs": 30, "max_steps_per_epoch": 2, "size": 64, "cache_mb": 0}
    w = start()
    rid = api.enqueue_run(tiny_spec(num_classes(data)), str(data), hp)
    wait_for(lambda: len(api.get_run(rid)["checkpoints"]) >= 1, 120, "a first epoch", w.text, every=0.05)
    shutil.rmtree(data)
    wait_for(lambda: _status(rid) in db.FINISHED, 120, "the run to end", w.text)
    r = api.get_run(rid)
    assert r["status"] == "failed", (r["status"], r["log_tail"])
    assert "video" in r["error"] or "clip" in r["error"], r["error"]


@pytest.mark.slow
def test_redis_and_postgresql_two_workers_cancel_crash_retry(dataset, env, monkeypatch, tmp_path):  # noqa: F811
    """...with the crashed run a 2-rank torchrun run (resumed under torchrun)."""
    from jobs import api
    from jobs.liveness import pid_alive
    with redis_server() as redis_url, postgres_server() as pg_url:
        monkeypatch.setenv("HUEY_REDIS_URL", redis_url)
        monkeypatch.setenv("DATABASE_URL", pg_url)
        db.dispose_engines()
        e = {**env, "HUEY_REDIS_URL": redis_url, "DATABASE_URL": pg_url, "CSN_GPUS": "0,1"}
        ws = [Consumer(e, tmp_path / f"c{i}.log", 1) for i in range(2)]
        logs = lambda: "\n".join(w.text() for w in ws)  # noqa: E731
        try:
            assert api.health() is None and db.get_engine().dialect.name == "postgresql"
            spec = tiny_spec(num_classes(dataset))
            a = api.enqueue_run(spec, str(dataset), FOREVER, name="cancel-me", gpus=0)
            b = api.enqueue_run(spec, str(dataset), {**LONG, "epochs": 15, "max_steps_per_epoch": 3,
                                                     "threads": 2}, gpus=2)      # torchrun, 2 ranks
            # kill b's worker as soon as b has a checkpoint: waiting for a as well let a fast CPU
            # finish b first (CI: b succeeded before the kill and no crash ever came)
            wait_for(lambda: len(api.get_run(b)["checkpoints"]) >= 1, 120, "the torchrun run to checkpoint",
                     logs, every=0.05)
            assert _status(b) == "running", api.get_run(b)["status"]
            victim = next(w for w in ws if f":{w.proc.pid}" in api.get_run(b)["worker_id"])
            launcher = api.get_run(b)["pid"]
            victim.kill(signal.SIGKILL)
            wait_for(lambda: _status(b) == "crashed", 30, "crash detection", logs)
            wait_for(lambda: not pid_alive(launcher), 10, "the orphaned torchrun group to stop")
            wait_for(lambda: len(api.get_run(a)["checkpoints"]) >= 1, 120, "the CPU run to checkpoint", logs)
            assert api.get_run(a)["worker_id"] != api.get_run(b)["worker_id"]   # one each
            assert api.cancel_run(a)     # frees the surviving worker for the retry
            wait_for(lambda: _status(a) == "cancelled", 20, "cancellation", logs)
            assert api.retry_run(b)
            wait_for(lambda: _status(b) in db.FINISHED, 120, "the retried run", logs)
            r = api.get_run(b)
            assert r["status"] == "succeeded" and r["attempts"] == 2, (r["error"], r["log_tail"])
            log = (Path(r["output_dir"]) / "train.log").read_text()
            assert log.count("--resume") == 1 and log.count("--nproc_per_node=2") == 2
            assert set(jsonl_keys(Path(r["output_dir"]))) == {
                (x["event"], x["split"], x["epoch"], x["step"], x["name"]) for x in api.get_metrics(b)}
        finally:
            for w in ws:
                w.stop()
            db.dispose_engines()
