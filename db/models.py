"""ORM schema: architectures, runs, metrics, checkpoints, workers (generic types only)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Run states. ``crashed``: its worker died (stale heartbeat); retry resumes from a checkpoint.
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, CRASHED = (
    "queued", "running", "succeeded", "failed", "cancelled", "crashed")
ACTIVE = (QUEUED, RUNNING)
FINISHED = (SUCCEEDED, FAILED, CANCELLED, CRASHED)


def utcnow() -> datetime:
    """Timezone-aware now (UTC)."""
    return datetime.now(timezone.utc)


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Architecture(Base):
    __tablename__ = "architectures"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec: Mapped[dict[str, Any]]
    params: Mapped[int] = mapped_column(BigInteger)
    flops: Mapped[int] = mapped_column(BigInteger)          # multiply-adds (paper FLOPs)
    interactions: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    runs: Mapped[list["Run"]] = relationship(back_populates="architecture")


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    architecture_id: Mapped[int | None] = mapped_column(
        ForeignKey("architectures.id", ondelete="SET NULL"))
    spec: Mapped[dict[str, Any]]                       # snapshot at enqueue time
    dataset: Mapped[str] = mapped_column(Text)
    hparams: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    epoch: Mapped[int] = mapped_column(default=0)
    step: Mapped[int] = mapped_column(default=0)
    total_epochs: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int] = mapped_column(default=0)
    heartbeat_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    log_tail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    output_dir: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    pid: Mapped[int | None]                            # the trainer subprocess (group leader)
    task_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    metrics_offset: Mapped[int] = mapped_column(default=0)  # bytes of metrics.jsonl ingested
    best_val_video_top1: Mapped[float | None] = mapped_column(Float)
    notes: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    # resources: what the run asked for (gpus None = 1 if the worker has GPUs, else 0) and got
    gpus: Mapped[int | None]
    threads: Mapped[int | None]
    devices: Mapped[str | None] = mapped_column(String(200))   # CUDA_VISIBLE_DEVICES it ran with
    wait_reason: Mapped[str | None] = mapped_column(Text)      # why a queued run is not running
    queued_at: Mapped[datetime | None]                         # last (re-)enqueue
    progress_at: Mapped[datetime | None]        # the trainer's newest event (its own clock)
    stall_timeout: Mapped[float | None] = mapped_column(Float)  # s without progress: fail the run
    slurm_job: Mapped[str | None] = mapped_column(String(32))  # Slurm job id (CSN_EXECUTOR=slurm)
    nodes: Mapped[str | None] = mapped_column(String(200))     # the Slurm job's node list
    prior_s: Mapped[float | None] = mapped_column(Float)       # wall time of earlier attempts
    architecture: Mapped[Architecture | None] = relationship(back_populates="runs")

    @property
    def progress(self) -> float:
        """Fraction of the run done, 0..1."""
        if self.status == SUCCEEDED:
            return 1.0
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint("run_id", "split", "epoch", "step", "name", "event", name="uq_metric_point"),
        Index("ix_metrics_run_id", "run_id", "id"),          # polling: run_id = ? AND id > ?
        Index("ix_metrics_series", "run_id", "name", "split", "event", "step", "value"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))
    split: Mapped[str] = mapped_column(String(16), default="")   # "" when the event has none
    epoch: Mapped[int] = mapped_column(default=0)
    step: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[float | None] = mapped_column(Float)             # unix seconds


class MetricBucket(Base):
    """``BUCKET_STEPS`` consecutive steps of one step series, kept by ``db.add_metrics``: the
    ids of the bucket's first min, first max and last point (what ``db.query`` draws)."""
    __tablename__ = "metric_buckets"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    split: Mapped[str] = mapped_column(String(16), primary_key=True)
    bucket: Mapped[int] = mapped_column(primary_key=True)          # step // BUCKET_STEPS
    lo_id: Mapped[int]
    lo_step: Mapped[int]
    lo_value: Mapped[float] = mapped_column(Float)
    hi_id: Mapped[int]
    hi_step: Mapped[int]
    hi_value: Mapped[float] = mapped_column(Float)
    last_id: Mapped[int]
    last_step: Mapped[int]


BUCKET_STEPS = 64


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("run_id", "path", name="uq_checkpoint_path"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int]
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Worker(Base):
    """One consumer process; ``last_seen`` is refreshed by its heartbeat thread."""
    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)   # host:pid
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    stopped: Mapped[bool] = mapped_column(Boolean, default=False)
    gpus: Mapped[str | None] = mapped_column(String(200))      # its GPU ids, comma-separated
    threads: Mapped[int | None]                                # its CPU thread budget


class Study(Base):
    """A named group of runs (backend.study): template, shared recipe, dataset, the plan."""
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    template: Mapped[str] = mapped_column(String(50))
    dataset: Mapped[str] = mapped_column(Text)
    plan: Mapped[dict[str, Any]]                        # backend.study.Study.to_dict()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    runs: Mapped[list["StudyRun"]] = relationship(cascade="all, delete-orphan",
                                                  order_by="StudyRun.position")


class StudyRun(Base):
    """Links a study to one of its runs; ``key`` is the planned run's label and seed."""
    __tablename__ = "study_runs"
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"),
                                          primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"),
                                        primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
