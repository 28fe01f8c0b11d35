"""What the app calls: enqueue, cancel and retry runs; read runs, metrics, workers, architectures.

Reads return plain dicts (safe to cache or serialise). No torch is imported here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from backend.csn import ArchSpec, count
from backend.csn.bounds import check_tree
from backend.csn.loading import spec_from_data
from backend.paths import check_dataset
from db import (ACTIVE, CANCELLED, CRASHED, FAILED, QUEUED, RUNNING, Architecture, Checkpoint,
                Run, Study, StudyRun, Worker, as_utc, check_database, read_session, utcnow, write)
from db.query import metric_points

from .hparams import validate_hparams
from .liveness import no_progress_s, reap_stale, stall_warn_s, worker_dead
from .outcome import settle_in
from .queue import huey, queue_problem, sync_storage
from .supervise import train_threads
from .worker import enqueue_task, queued_task_ids, reconcile_queued, set_fields  # noqa: F401 - reconcile_queued re-exported

RETRYABLE = (FAILED, CANCELLED, CRASHED)


def checked_spec(spec: ArchSpec | dict[str, Any]):
    """``(full spec dict, note, totals)`` of a spec the queue accepts: bounded, valid and
    counted (SpecError otherwise); the note says what was filled in from the defaults."""
    loaded = spec_from_data(spec, "spec")
    totals = count(loaded.spec).totals
    return loaded.spec.to_dict(), loaded.note(), totals


def enqueue_run(spec: ArchSpec | dict[str, Any], dataset: str, hparams: dict[str, Any],
                name: str | None = None, gpus: int | None = None,
                stall_timeout: float | None = None) -> int:
    """Create a queued run and put its task on the queue; returns the run id.

    ``hparams`` are ``TrainConfig`` fields and become trainer flags (``{"batch_size": 4}`` ->
    ``--batch-size 4``); unknown keys, wrong types and the worker's paths (``out``, ``data``,
    ``arch``, ``resume``) raise ``ValueError``. The run asks for ``gpus`` (also accepted as
    ``hparams["gpus"]``; None: 1 when the worker has GPUs, else 0) and ``hparams["threads"]``
    CPU threads (default ``CSN_TRAIN_THREADS`` or 1). ``stall_timeout`` (seconds, optional):
    fail the run when its trainer writes no event for that long. A dataset outside the data
    roots raises ``PathRefused`` (backend.paths); a missing dataset inside them is not rejected
    here: the worker fails the run with a clear error. An invalid spec raises ``SpecError``
    (nothing is created); what a partial spec took from the defaults is put in the run's notes.
    """
    hp = validate_hparams(hparams)
    gpus = hp.pop("gpus", gpus)
    validate_hparams({"gpus": gpus})
    stall = _check_stall_timeout(stall_timeout)
    ds = str(check_dataset(dataset))
    sd, note, _ = checked_spec(spec)

    def create(s):
        arch = s.scalar(select(Architecture).where(Architecture.name == sd.get("name")))
        r = Run(name=name, spec=sd, dataset=ds, hparams=hp, status=QUEUED, gpus=gpus,
                threads=train_threads(hp), queued_at=utcnow(), notes=note or None, stall_timeout=stall,
                architecture_id=arch.id if arch is not None and arch.spec == sd else None)
        s.add(r)
        s.flush()
        return r.id
    run_id = write(create)
    enqueue_task(run_id)
    return run_id


def _check_stall_timeout(v: float | None) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 30 * 86400:
        raise ValueError("stall_timeout must be a number of seconds from 1 to 2592000 (30 days), or None")
    return float(v)


def cancel_run(run_id: int) -> bool:
    """Cancel a queued run now, or ask the worker to stop a running one (within ~1 s).

    Returns False when the run is already finished or unknown.
    """
    def cancel(s):
        r = s.get(Run, run_id)
        if r is None or r.status not in ACTIVE:
            return None
        r.cancel_requested = True
        if r.status == QUEUED:
            r.status, r.finished_at = CANCELLED, utcnow()
        return r.task_id
    got = write(cancel)
    if got is None:
        return False
    if got:
        sync_storage().revoke_by_id(got)
    return True


def retry_run(run_id: int) -> bool:
    """Re-queue a failed, cancelled or crashed run (the trainer resumes from its last
    checkpoint when there is one), or a queued run whose queue message was lost. Returns
    False when the run is not retryable (unknown, running, finished well, or still queued).
    A crashed run whose trainer did exit 0 (its outcome file) becomes ``succeeded`` instead."""
    def reset(s):
        r = s.get(Run, run_id)
        if r is not None and r.status == CRASHED and settle_in(s, r):
            return None
        if r is None or r.status not in RETRYABLE + (QUEUED,):
            return None
        if r.status == QUEUED:
            return r.task_id or ""
        # the attempt that ended is kept in the total: a crashed one ran until its last heartbeat
        end = (r.heartbeat_at if r.status == CRASHED else None) or r.finished_at or r.heartbeat_at
        if r.started_at and end:
            r.prior_s = (r.prior_s or 0.0) + max(
                0.0, (as_utc(end) - as_utc(r.started_at)).total_seconds())
        r.started_at = None                         # counted once, whatever happens before it starts
        r.status, r.cancel_requested, r.error, r.finished_at, r.pid = QUEUED, False, None, None, None
        r.devices, r.wait_reason = None, None
        return ""
    got = write(reset)
    if got is None or (got and got in queued_task_ids()):
        return False
    enqueue_task(run_id)
    return True


def retry_outlook(run_id: int) -> str:
    """What retrying the run will really do, for people: the worker resumes only from a
    checkpoint file in the run's folder (jobs.supervise), else the run starts over."""
    r = get_run(run_id)
    if r is None or r["status"] not in RETRYABLE:
        return "This run cannot be retried."
    ckpts = sorted((Path(r["output_dir"]) / "checkpoints").glob("epoch_*.pt")) if r.get("output_dir") else []
    if ckpts:
        return (f"Retry resumes after epoch {int(ckpts[-1].stem.split('_')[1])} (its last "
                "checkpoint); the steps after it run again.")
    return "Retry starts over from step 0: the run stopped before its first checkpoint."


def run_dict(r: Run, checkpoints: list[Checkpoint] | None = None) -> dict[str, Any]:
    """A run row as a plain dict (with ``progress`` 0..1)."""
    d = {c.name: getattr(r, c.name) for c in Run.__table__.columns}
    for k in ("heartbeat_at", "created_at", "started_at", "finished_at", "progress_at"):
        d[k] = as_utc(d[k])
    d["progress"] = r.progress
    quiet = no_progress_s(r.progress_at, r.started_at, utcnow()) if r.status == RUNNING else None
    d["no_progress_s"] = quiet if quiet is not None and quiet >= stall_warn_s() else None
    if checkpoints is not None:
        d["checkpoints"] = [{"epoch": c.epoch, "path": c.path, "metrics": c.metrics,
                             "created_at": as_utc(c.created_at)} for c in checkpoints]
    return d


def list_runs(status: str | list[str] | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Runs, newest first, optionally filtered by status."""
    q = select(Run).order_by(Run.id.desc()).limit(limit)
    if status:
        q = q.where(Run.status.in_([status] if isinstance(status, str) else status))
    with read_session() as s:
        return [run_dict(r) for r in s.scalars(q)]


def get_run(run_id: int) -> dict[str, Any] | None:
    """One run with its ``checkpoints`` list, or None."""
    with read_session() as s:
        r = s.get(Run, run_id)
        if r is None:
            return None
        cks = list(s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.epoch)))
        return run_dict(r, cks)


def get_metrics(run_id: int, name: str | None = None, split: str | None = None,
                event: str | None = None, since_id: int = 0,
                max_points: int | None = None) -> list[dict[str, Any]]:
    """Metric points ``{id, event, split, epoch, step, name, value, time}`` in training order.

    ``since_id``: only points with a larger id (incremental polling). ``max_points``: step
    series longer than this come back as per-bucket min/max/last points for display
    (``db.query.metric_points``); without it, every stored point.
    """
    with read_session() as s:
        return metric_points(s, run_id, name, split, event, since_id, max_points)


def worker_status() -> dict[str, Any]:
    """``{alive, last_seen, workers, queued, waiting, running, reaped, gpus}``.

    ``workers``: the live ones (else the last three), each ``{id, alive, last_seen,
    started_at, gpus, threads, busy_gpus, busy_threads, runs}``. A worker is alive by the
    reaper's rule (fresh heartbeat and, on this host, a live pid). Also marks runs of dead
    workers ``crashed``.
    """
    reaped = reap_stale()
    now = utcnow()
    with read_session() as s:
        ws = list(s.scalars(select(Worker).order_by(Worker.last_seen.desc())))
        n = dict(s.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        running = s.execute(select(Run.id, Run.worker_id, Run.devices, Run.threads).where(
            Run.status == RUNNING)).all()
        waiting = s.scalar(select(func.count()).select_from(Run).where(
            Run.status == QUEUED, Run.wait_reason.is_not(None)))
    workers = []
    for w in ws:
        mine = [r for r in running if r.worker_id == w.id]
        workers.append({
            "id": w.id, "last_seen": as_utc(w.last_seen), "started_at": as_utc(w.started_at),
            "alive": not w.stopped and not worker_dead(w.id, w.last_seen, now),
            "gpus": [g for g in (w.gpus or "").split(",") if g], "threads": w.threads,
            "busy_gpus": [g for r in mine for g in (r.devices or "").split(",") if g],
            "busy_threads": sum(r.threads or 0 for r in mine), "runs": [r.id for r in mine]})
    live = [w for w in workers if w["alive"]]
    return {"alive": bool(live), "last_seen": workers[0]["last_seen"] if workers else None,
            "workers": live or workers[:3], "queued": n.get(QUEUED, 0), "waiting": waiting,
            "running": n.get(RUNNING, 0), "reaped": reaped,
            "gpus": max((len(w["gpus"]) for w in live), default=0)}


def health() -> str | None:
    """None when the queue and the run database both answer; else one sentence saying what is
    wrong and how to fix it (for the app's banner)."""
    return queue_problem() or check_database()


def save_architecture(name: str, spec: ArchSpec | dict[str, Any]) -> int:
    """Store (or replace) a named architecture with its counted totals; returns its id.

    Raises ``SpecError`` for an invalid spec.
    """
    sd, _, t = checked_spec(spec)

    def save(s):
        a = s.scalar(select(Architecture).where(Architecture.name == name))
        if a is None:
            a = Architecture(name=name, spec=sd, params=t.params, flops=t.flops, interactions=t.interactions)
            s.add(a)
        else:
            a.spec, a.params, a.flops, a.interactions = sd, t.params, t.flops, t.interactions
        s.flush()
        return a.id
    return write(save)


def list_architectures() -> list[dict[str, Any]]:
    """Saved architectures ``{id, name, spec, params, flops, interactions, created_at}``, by name."""
    with read_session() as s:
        return [{"id": a.id, "name": a.name, "spec": a.spec, "params": a.params, "flops": a.flops,
                 "interactions": a.interactions, "created_at": as_utc(a.created_at)}
                for a in s.scalars(select(Architecture).order_by(Architecture.name))]


# --- studies ----------------------------------------------------------------------------------
def enqueue_study(plan: dict[str, Any], dataset: str) -> int:
    """Store a study (``backend.study.Study.to_dict()``) and enqueue its runs with the shared
    recipe, in plan order; returns the study id."""
    from backend.study import Study as Plan, train_hparams
    study = Plan.from_dict(check_tree(plan, "study plan"))
    sid = write(lambda s: _add(s, Study(name=study.name, template=study.template,
                                        dataset=str(dataset), plan=plan)))
    for i, run in enumerate(study.runs):
        rid = enqueue_run(run.spec, dataset, train_hparams(study, run), name=f"{study.name}: {run.key}")
        write(lambda s: s.add(StudyRun(study_id=sid, run_id=rid, key=run.key, position=i)))
    return sid


def _add(s, row) -> int:
    s.add(row)
    s.flush()
    return row.id


def list_studies() -> list[dict[str, Any]]:
    """Studies, newest first: ``{id, name, template, dataset, created_at, cancelled, runs,
    status: {status: n}}``."""
    with read_session() as s:
        out = []
        for st in s.scalars(select(Study).order_by(Study.id.desc())):
            counts: dict[str, int] = {}
            for link in st.runs:
                r = s.get(Run, link.run_id)
                counts[r.status] = counts.get(r.status, 0) + 1
            out.append({"id": st.id, "name": st.name, "template": st.template,
                        "dataset": st.dataset, "created_at": as_utc(st.created_at),
                        "cancelled": st.cancelled, "runs": len(st.runs), "status": counts})
        return out


def get_study(study_id: int) -> dict[str, Any] | None:
    """A study with its ``plan`` and ``runs`` (run dicts with the planned ``key``), or None."""
    with read_session() as s:
        st = s.get(Study, study_id)
        if st is None:
            return None
        runs = [dict(run_dict(s.get(Run, link.run_id)), key=link.key) for link in st.runs]
        return {"id": st.id, "name": st.name, "template": st.template, "dataset": st.dataset,
                "plan": st.plan, "created_at": as_utc(st.created_at), "cancelled": st.cancelled,
                "runs": runs}


def cancel_study(study_id: int) -> int:
    """Cancel every queued or running run of a study; returns how many were cancelled."""
    def mark(s):
        st = s.get(Study, study_id)
        if st is None:
            return []
        st.cancelled = True
        return [link.run_id for link in st.runs]
    return sum(cancel_run(rid) for rid in write(mark))


__all__ = ["enqueue_run", "cancel_run", "retry_run", "retry_outlook", "reconcile_queued", "list_runs",
           "get_run", "get_metrics", "worker_status", "health", "save_architecture",
           "list_architectures", "enqueue_study", "list_studies",
           "get_study", "cancel_study", "huey"]
