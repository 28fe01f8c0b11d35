"""Train a 3D ResNet / CSN on videos with the paper's recipe (§4.1), scaled to the data.

    python -m backend.train --arch ir-csn-26 --data DIR_OR_CSV --out RUN_DIR [options]
    torchrun --nproc_per_node=2 -m backend.train ...      # DistributedDataParallel

Recipe: SGD (momentum 0.9, weight decay 1e-4; ``--optimizer adamw`` as an option), linear
warm-up for 10/45 of the epochs then a half-cosine, stepped every iteration; clips of T=8
frames taking every 2nd frame; short side jittered in [8/7, 10/7] x crop (256-320 for 224),
random crop; validation with 10 centre clips per video and averaged softmax (video@1,
video@5). The learning rate defaults to the paper's 0.01 per 8 clips, scaled linearly with
the global batch.

Outputs (docs/contracts.md): ``RUN_DIR/metrics.jsonl`` (one event per line, flushed),
``RUN_DIR/checkpoints/epoch_XXXX.pt`` (atomic, last K kept), ``RUN_DIR/config.json``.
``--resume`` continues from the newest checkpoint and reproduces the metrics an
uninterrupted run would have had: the data order and jitter depend only on (seed, epoch,
index), and model, optimiser, scheduler and RNG states are restored.

One module of ~600 lines on purpose: the loop, its setup (data, model, optimiser) and its
exit contract (signals, ``outcome.json``, exit codes) change together and are read together;
the settings and their flags live in :mod:`backend.training.config`, checkpoints in
:mod:`backend.training.checkpoint`, evaluation in :mod:`backend.evaluate`.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from backend.training.checkpoint import (FORMAT, CheckpointError, checkpoint_path, latest_checkpoint, prune,
                                read_checkpoint, rng_state, save_atomic, set_rng_state)
from backend.csn import ArchSpec, SpecError, build_model, preset
from backend.csn.loading import LoadedSpec, read_spec_file, spec_from_data, spec_from_text
from backend.csn.perf import (PerfSettings, autocast, prepare_input, prepare_model,
                              training_settings)
from backend.data.datasets import (ClipDataset, DatasetError, SeededSampler, Splits, collate_skip,
                              load_splits)
from backend.evaluate import evaluate, video_loader
from backend.training.finetune import FinetunePlan, freeze, param_groups, set_train_mode
from backend.data.framecache import FrameCache
from backend.training.config import TrainConfig, build_parser, config_from_args  # noqa: F401 - re-exported
from backend.data.video import Norm

log = logging.getLogger("backend.train")
Callback = Callable[[dict[str, Any]], None]


# --- architecture ------------------------------------------------------------------------------
def resolve_arch(arch: str, *, num_classes: int | None, frames: int, size: int) -> ArchSpec:
    """A preset name, a spec JSON file or inline JSON -> validated spec for this data/clip
    (``num_classes`` None keeps the spec's). What a JSON spec left to the defaults is logged."""
    arch = arch.strip()
    if arch.startswith("{"):
        loaded = spec_from_text(arch, "--arch", validate=False)
    elif arch.endswith(".json") or os.path.sep in arch:
        if not Path(arch).is_file():
            raise SpecError("", f"spec file {arch[:120]} does not exist")
        loaded = read_spec_file(arch, validate=False)
    else:
        loaded = LoadedSpec(preset(arch), [])
    if loaded.filled:
        log.info("--arch: %s", loaded.note())
    spec = replace(loaded.spec, num_classes=num_classes or loaded.spec.num_classes, frames=frames,
                   height=size, width=size)
    return spec.validate()


# --- distributed ---------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # we initialised the process group (and destroy it at the end)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


def _init_dist(device_kind: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
        owned = True
    else:
        owned = False
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owned)


def _pick_device(want: str, local_rank: int) -> torch.device:
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device cuda requested but no CUDA GPU is available")
        dev = torch.device(want if ":" in want else f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
        return dev
    return torch.device("cpu")


# --- events ----------------------------------------------------------------------------------------
class EventLog:
    """Events to ``metrics.jsonl`` (appended, flushed per line), the callback and, with
    ``tb_dir``, TensorBoard scalars (``train/*`` per logged step, ``train_epoch/*``, ``val/*``);
    rank 0 only. ``purge_step`` (resume) drops TensorBoard points at or past it."""

    def __init__(self, path: Path | None, callback: Callback | None, total_steps: int,
                 total_epochs: int, tb_dir: Path | None = None, purge_step: int | None = None):
        self.path, self.callback = path, callback
        self.total_steps, self.total_epochs = total_steps, total_epochs
        self.tb = None
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(tb_dir), purge_step=purge_step)

    def emit(self, event: str, *, epoch: int, step: int, split: str = "train",
             metrics: dict[str, float] | None = None, **extra: Any) -> dict[str, Any]:
        rec = {"event": event, "epoch": epoch, "step": step, "total_steps": self.total_steps,
               "total_epochs": self.total_epochs, "split": split,
               "metrics": {k: float(v) for k, v in (metrics or {}).items()},
               "time": time.time(), **extra}
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
                f.flush()
        if self.tb is not None and event in ("step", "epoch"):
            group = split if event == "step" or split != "train" else "train_epoch"
            for k, v in rec["metrics"].items():
                if math.isfinite(v):
                    self.tb.add_scalar(f"{group}/{k}", v, step, walltime=rec["time"])
            if event == "epoch":
                self.tb.flush()
        if self.callback is not None:
            self.callback(rec)
        return rec

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# --- the run ---------------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding + resizing; the main process owns the cores


def _finetune_load(model: nn.Module, path: str) -> dict[str, int]:
    """Load every weight whose name and shape match; the head may differ (new classes)."""
    ckpt = read_checkpoint(path)
    own = model.state_dict()
    take = {k: v for k, v in ckpt["model"].items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in take and not k.startswith("head.")]
    if missing:
        raise CheckpointError(f"{path}: architecture differs from --arch beyond the "
                              f"classifier (e.g. {missing[:3]})")
    model.load_state_dict(take, strict=False)
    return {"loaded": len(take), "new": len(own) - len(take)}


def _build_optimizer(model: nn.Module, cfg: TrainConfig, world: int) -> tuple[torch.optim.Optimizer, float]:
    """The optimiser and its peak learning rate (default scaled linearly with the global batch)."""
    batch = cfg.batch_size * world
    if cfg.optimizer == "adamw":
        lr = cfg.lr if cfg.lr is not None else 1e-3 * batch / 16
        groups = param_groups(model, lr, FinetunePlan.of(cfg))  # frozen parameters left out
        # fused: one kernel for every parameter (measured 2x faster than the default loop)
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                    for g in groups for p in g["params"])
        return torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay,
                                 fused=fused or None), lr
    lr = cfg.lr if cfg.lr is not None else 0.01 * batch / 8
    return torch.optim.SGD(param_groups(model, lr, FinetunePlan.of(cfg)), lr=lr,
                           momentum=cfg.momentum, weight_decay=cfg.weight_decay), lr


def _build_scheduler(opt: torch.optim.Optimizer, total: int, warmup: int, start: float):
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total - warmup))
    if warmup <= 0:
        return cos
    lin = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start, end_factor=1.0,
                                            total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(opt, [lin, cos], milestones=[warmup])


def check_readable(what: str, good: float, bad: float, max_bad_fraction: float) -> None:
    """Raise DatasetError when no video of ``what`` was readable or too many were not."""
    total = good + bad
    if total and not good:
        raise DatasetError(f"{what}: none of the {int(bad)} videos could be read (data deleted "
                           "or unreadable?)")
    if total and bad / total > max_bad_fraction:
        raise DatasetError(f"{what}: {int(bad)} of {int(total)} videos could not be read "
                           f"(more than max_bad_fraction {max_bad_fraction:g})")


def _state_digest(model: nn.Module) -> float:
    """A cheap fingerprint of all weights and buffers (used to compare DDP ranks)."""
    return float(sum(v.double().sum().item() * (i + 1)
                     for i, v in enumerate(model.state_dict().values()) if v.is_floating_point()))


def train(cfg: TrainConfig, callback: Callback | None = None) -> dict[str, Any]:
    """Run training; returns ``{"metrics", "epoch", "checkpoint", "model", "classes", "spec"}``.

    Raises DatasetError / SpecError / CheckpointError / ValueError with a message for people.
    """
    d = _init_dist("cuda" if cfg.device.startswith("cuda") or
                   (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        return _train(cfg, callback, d)
    finally:
        if d.owned and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Run:
    """Everything one training run holds between its phases (see :func:`_train`)."""

    cfg: TrainConfig
    d: Dist
    perf: PerfSettings
    spec: ArchSpec
    classes: list[str]
    model: nn.Module
    net: nn.Module                  # the model, DDP-wrapped when distributed
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    sampler: SeededSampler
    train_loader: DataLoader
    val_loader: DataLoader | None
    steps: int                      # iterations per epoch
    start_epoch: int
    events: EventLog
    config: dict[str, Any]
    last_ckpt: Path | None
    step: int = 0
    epoch: int = 0


def _resolve_spec(cfg: TrainConfig, splits: Splits) -> tuple[ArchSpec, dict | None, Path | None]:
    """The architecture: the resumed checkpoint's, ``--arch``, or the fine-tuned one's."""
    resume_from = latest_checkpoint(Path(cfg.out)) if cfg.resume else None
    ckpt = read_checkpoint(resume_from) if resume_from is not None else None
    if ckpt is not None:
        if list(ckpt["classes"]) != splits.classes:
            raise DatasetError(f"cannot resume: the data's classes differ from {resume_from}'s")
        return spec_from_data(ckpt["spec"], "checkpoint spec").spec, ckpt, resume_from
    if cfg.arch:
        return resolve_arch(cfg.arch, num_classes=len(splits.classes), frames=cfg.frames,
                            size=cfg.size), None, None
    if cfg.finetune_from:
        base = spec_from_data(read_checkpoint(cfg.finetune_from)["spec"], "checkpoint spec",
                              validate=False).spec
        return replace(base, num_classes=len(splits.classes), frames=cfg.frames,
                       height=cfg.size, width=cfg.size).validate(), None, None
    raise SpecError("", "no architecture given (--arch PRESET_OR_SPEC_JSON)")


def _frame_cache(cfg: TrainConfig, paths: list[str], d: Dist) -> FrameCache:
    """Every video decoded once into memory (within ``cache_mb``), taking what it can from
    ``cache_file`` first and (rank 0) writing the file back when it had to decode more."""
    cache = FrameCache(cfg.cache_mb)
    if cfg.cache_file:
        return cache.fill_shared(cfg.cache_file, paths, workers=cfg.workers, write=d.main)
    return cache.fill(paths, workers=cfg.workers)


def _loaders(cfg: TrainConfig, splits: Splits, spec: ArchSpec, d: Dist, device: torch.device):
    """(sampler, train loader, val loader or None, steps per epoch, frame-cache stats)."""
    scale = (cfg.scale_min or round(cfg.size * 8 / 7), cfg.scale_max or round(cfg.size * 10 / 7))
    if scale[0] > scale[1]:
        raise ValueError(f"scale-min {scale[0]} > scale-max {scale[1]}")
    norm = Norm.of(spec)  # the normalisation the (possibly imported) weights expect
    val_items = splits.val[d.rank::d.world]
    cache = _frame_cache(cfg, [it.path for it in splits.train + val_items], d)
    train_ds = ClipDataset(splits.train, frames=cfg.frames, rate=cfg.rate, size=cfg.size,
                           scale=scale, train=True, norm=norm, cache=cache)
    sampler = SeededSampler(train_ds, seed=cfg.seed, num_replicas=d.world, rank=d.rank)
    loader_kw: dict[str, Any] = {}
    if cfg.workers > 0:
        loader_kw = dict(persistent_workers=True, prefetch_factor=cfg.prefetch,
                         worker_init_fn=_worker_init)
    train_loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler,
                              num_workers=cfg.workers, collate_fn=collate_skip,
                              pin_memory=device.type == "cuda", **loader_kw)
    val_loader = video_loader(val_items, frames=cfg.frames, rate=cfg.rate, size=cfg.size,
                              num_clips=cfg.eval_clips,
                              videos_per_batch=max(1, cfg.batch_size // cfg.eval_clips),
                              workers=min(cfg.workers, 1), norm=norm, cache=cache) if splits.val else None
    steps = min(len(train_loader), cfg.max_steps_per_epoch or len(train_loader))
    return sampler, train_loader, val_loader, steps, {**cache.stats(), "scale": scale}


def _setup(cfg: TrainConfig, callback: Callback | None, d: Dist) -> _Run:
    """Data, model, optimiser (restored when resuming), DDP and the event log; emits "start"."""
    device = _pick_device(cfg.device, d.local_rank)
    perf = replace(training_settings(device, cfg.amp),   # refuses an emulated precision
                   threads=cfg.threads or max(1, (os.cpu_count() or 1) // d.world))
    if not cfg.data:
        raise DatasetError("no data given (--data DIR_OR_CSV)")
    splits = load_splits(cfg.data, val_data=cfg.val_data, val_fraction=cfg.val_fraction,
                         seed=cfg.seed, video_root=cfg.video_root, split=cfg.split)
    spec, ckpt, resume_from = _resolve_spec(cfg, splits)
    _seed_everything(cfg.seed)
    model = build_model(spec)
    finetuned = _finetune_load(model, cfg.finetune_from) if cfg.finetune_from and ckpt is None else None
    trainable = freeze(model, FinetunePlan.of(cfg))
    model = prepare_model(model, device, train=True, settings=perf)
    sampler, train_loader, val_loader, steps, cache = _loaders(cfg, splits, spec, d, device)

    opt, lr = _build_optimizer(model, cfg, d.world)
    warmup_epochs = cfg.warmup_epochs if cfg.warmup_epochs is not None else cfg.epochs * 10 / 45
    sched = _build_scheduler(opt, steps * cfg.epochs, round(warmup_epochs * steps), cfg.warmup_start)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    start_epoch = 1
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        start_epoch = int(ckpt["epoch"]) + 1
    net: nn.Module = model
    if d.on:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    scale = cache.pop("scale")
    config = {**asdict(cfg), "lr": lr, "warmup_epochs": warmup_epochs, "scale_min": scale[0],
              "scale_max": scale[1], "world_size": d.world, **trainable}
    out, step = Path(cfg.out), (start_epoch - 1) * steps
    events = EventLog(out / "metrics.jsonl" if d.main else None, callback if d.main else None,
                      steps * cfg.epochs, cfg.epochs, tb_dir=out if d.main and cfg.tensorboard else None,
                      purge_step=step + 1 if ckpt is not None else None)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(
            {"config": config, "spec": spec.to_dict(), "classes": splits.classes}, indent=2))
    events.emit("start", epoch=start_epoch - 1, step=step, classes=splits.classes,
                spec=spec.to_dict(), config=config, data=splits.source,
                train_videos=len(splits.train), val_videos=len(splits.val), device=str(device),
                world_size=d.world, frame_cache=cache,
                resumed_from=str(resume_from) if resume_from else None, finetuned=finetuned)
    return _Run(cfg, d, perf, spec, splits.classes, model, net, opt, sched, scaler,
                nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), sampler, train_loader,
                val_loader, steps, start_epoch, events, config, resume_from, step, start_epoch - 1)


def _train_step(r: _Run, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    """One optimiser step on a batch; (loss, correct clips)."""
    x, y = prepare_input(x, r.perf), y.to(r.perf.device, non_blocking=True)
    with autocast(r.perf):
        logits = r.net(x)
        loss = r.criterion(logits.float(), y)
    r.opt.zero_grad(set_to_none=True)
    r.scaler.scale(loss).backward()
    r.scaler.step(r.opt)
    r.scaler.update()
    value = loss.item()
    if not math.isfinite(value):
        raise FloatingPointError(f"loss became {value} at epoch {r.epoch} step {r.step + 1}; "
                                 "lower --lr")
    return value, int((logits.argmax(1) == y).sum().item())


def _train_epoch(r: _Run) -> tuple[dict[str, float], float]:
    """One pass over the (jittered) training clips: (metrics, clips read), summed over ranks."""
    cfg, d = r.cfg, r.d
    r.sampler.set_epoch(r.epoch)
    r.net.train()
    set_train_mode(r.model, FinetunePlan.of(cfg))  # frozen parts and norm_eval BN stay in eval
    sums = torch.zeros(4, dtype=torch.float64)  # loss_sum, correct, clips, bad
    t0, seen, loss = time.time(), 0, float("nan")
    bar = None
    if d.main and (cfg.progress if cfg.progress is not None else sys.stderr.isatty()):
        from tqdm import tqdm
        bar = tqdm(total=r.steps, desc=f"epoch {r.epoch}/{cfg.epochs}", leave=False)
    for i, (x, y, bad) in enumerate(r.train_loader):
        if _terminated.is_set():
            raise KeyboardInterrupt("terminated by signal 15")
        if i >= r.steps:
            break
        sums[3] += bad
        if x is not None and y.numel() == 1 and cfg.batch_size > 1 and not d.on:
            x = None  # one clip left (a short last batch, or unreadable videos): BatchNorm needs 2
        if x is not None:
            loss, correct = _train_step(r, x, y)
            sums += torch.tensor([loss * y.numel(), correct, y.numel(), 0], dtype=torch.float64)
            seen += y.numel()
        elif d.on:
            raise DatasetError("a whole batch of unreadable videos under DDP; fix the data")
        r.sched.step()
        r.step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{sums[0] / max(sums[2], 1):.3f}")
        if r.step % cfg.log_every == 0 or i == r.steps - 1:
            r.events.emit("step", epoch=r.epoch, step=r.step, metrics={
                "loss": loss if x is not None else float("nan"), "lr": r.opt.param_groups[0]["lr"],
                "clips_per_s": seen * d.world / max(time.time() - t0, 1e-9)})
    if bar is not None:
        bar.close()
    if d.on:
        dist.all_reduce(sums)
        for b in r.model.buffers():  # BN statistics: rank 0's are the model's
            dist.broadcast(b, 0)
    n = max(sums[2].item(), 1)
    return {"loss": sums[0].item() / n, "clip_top1": sums[1].item() / n,
            "bad_videos": sums[3].item(), "epoch_time_s": time.time() - t0,
            "clips_per_s": sums[2].item() / max(time.time() - t0, 1e-9)}, sums[2].item()


def _save_checkpoint(r: _Run, metrics: dict[str, float]) -> None:
    """Rank 0: an atomic checkpoint of everything a resume needs; keep the last K."""
    path = checkpoint_path(Path(r.cfg.out), r.epoch)
    save_atomic({"format": FORMAT, "model": r.model.state_dict(), "optimizer": r.opt.state_dict(),
                 "scheduler": r.sched.state_dict(), "scaler": r.scaler.state_dict(),
                 "epoch": r.epoch, "step": r.step, "rng": rng_state(), "spec": r.spec.to_dict(),
                 "classes": r.classes, "config": r.config, "metrics": metrics}, path)
    r.last_ckpt = path
    removed = prune(Path(r.cfg.out), r.cfg.keep_last)
    r.events.emit("checkpoint", epoch=r.epoch, step=r.step, path=str(path),
                  removed=[str(p) for p in removed])


def _train(cfg: TrainConfig, callback: Callback | None, d: Dist) -> dict[str, Any]:
    t_start = time.time()
    r = _setup(cfg, callback, d)
    metrics: dict[str, float] = {}
    try:
        for r.epoch in range(r.start_epoch, cfg.epochs + 1):
            # train: one pass over jittered clips (paper §4.1); fail on unreadable data
            train_m, clips = _train_epoch(r)
            r.events.emit("epoch", epoch=r.epoch, step=r.step, split="train", metrics=train_m)
            check_readable(f"epoch {r.epoch} training", clips, train_m["bad_videos"],
                           cfg.max_bad_fraction)
            metrics = {f"train_{k}": v for k, v in train_m.items()}
            # validate: N centre clips per video, softmax averaged (video@1, video@5)
            if r.val_loader is not None and (r.epoch % cfg.eval_every == 0 or r.epoch == cfg.epochs):
                val_m = evaluate(r.model, r.val_loader, torch.device(r.perf.device),
                                 settings=r.perf, distributed=d.on)
                r.events.emit("epoch", epoch=r.epoch, step=r.step, split="val", metrics=val_m)
                check_readable(f"epoch {r.epoch} validation", val_m["videos"],
                               val_m["bad_videos"], cfg.max_bad_fraction)
                metrics.update({f"val_{k}": v for k, v in val_m.items()})
            # checkpoint (rank 0), then wait for every rank
            if d.main:
                _save_checkpoint(r, metrics)
            if d.on:
                dist.barrier()
            if _stop_after_checkpoint.is_set() and not d.on and r.epoch < cfg.epochs:
                raise StopForResume(f"stopped after the epoch {r.epoch} checkpoint on request")
    except StopForResume:
        r.events.close()        # no "end" event: the run goes on after --resume
        raise
    except BaseException as e:
        _end_event(r, metrics, status="cancelled" if isinstance(e, KeyboardInterrupt) else "error",
                   error=f"{type(e).__name__}: {e}")
        raise
    r.epoch = cfg.epochs
    _end_event(r, metrics, status="ok", wall_time_s=time.time() - t_start)
    return {"metrics": metrics, "epoch": cfg.epochs, "checkpoint": r.last_ckpt, "model": r.model,
            "spec": r.spec, "classes": r.classes, "digest": _state_digest(r.model), "rank": d.rank}


def _end_event(r: _Run, metrics: dict[str, float], **extra: Any) -> None:
    """The "end" event (best effort after an error: the original error matters more)."""
    try:
        r.events.emit("end", epoch=r.epoch, step=r.step, metrics=metrics,
                      checkpoint=str(r.last_ckpt) if r.last_ckpt else None, **extra)
    except Exception:  # noqa: BLE001
        if extra.get("status") == "ok":
            raise
    finally:
        r.events.close()


# --- command line --------------------------------------------------------------------------------
_terminated = threading.Event()


RESUME_EXIT = 75   # EX_TEMPFAIL: checkpointed on SIGUSR1 and stopped; --resume continues
_stop_after_checkpoint = threading.Event()


class StopForResume(Exception):
    """SIGUSR1 came (a scheduler's warning before it stops the job): the epoch's checkpoint
    is written and the trainer stops, so a requeued job resumes with nothing recomputed."""


def _sigusr1(signum, frame) -> None:
    _stop_after_checkpoint.set()


def _sigterm(signum, frame) -> None:
    # raised where the signal lands; an exception raised inside a finaliser is lost, so the
    # training loop also checks the flag once per step
    _terminated.set()
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; SIGTERM (a cancelled job) ends the run with an "end" event, exit 130;
    SIGUSR1 stops it after the current epoch's checkpoint, exit :data:`RESUME_EXIT`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm)
        signal.signal(signal.SIGUSR1, _sigusr1)
    _stop_after_checkpoint.clear()
    try:
        cfg = config_from_args(argv, __doc__)
        if cfg.arch and not cfg.resume:      # a bad spec is refused before any data is read
            resolve_arch(cfg.arch, num_classes=None, frames=cfg.frames, size=cfg.size)
        result = train(cfg)
    except (DatasetError, SpecError, CheckpointError, ValueError, FloatingPointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except StopForResume as e:
        print(f"stopped for resume: {e}", file=sys.stderr)
        return RESUME_EXIT
    except KeyboardInterrupt as e:
        print(f"error: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line must still say what happened
        traceback.print_exc()
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if result["rank"] == 0:
        m = result["metrics"]
        print(json.dumps({"checkpoint": str(result["checkpoint"]), **m}))
    return 0


def write_outcome(argv: list[str] | None, rc: int) -> None:
    """Rank 0 leaves its exit status in ``RUN_DIR/outcome.json`` (atomic: temp file +
    rename), so the run's end survives its supervisor; ``attempt`` is ``CSN_RUN_ATTEMPT``."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--out")
    out = p.parse_known_args(sys.argv[1:] if argv is None else argv)[0].out
    if not out or os.environ.get("RANK", "0") != "0" or not os.path.isdir(out):
        return
    rec = {"exit_status": rc, "time": time.time(), "pid": os.getpid(),
           "attempt": os.environ.get("CSN_RUN_ATTEMPT")}
    tmp = Path(out, f".outcome.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as f:
            json.dump(rec, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, Path(out, "outcome.json"))
    except OSError:
        pass


def cli(argv: list[str] | None = None) -> int:
    """:func:`main`, then :func:`write_outcome` (``python -m backend.train``)."""
    rc = 1
    try:
        rc = main(argv)
    except SystemExit as e:   # argparse's usage errors
        rc = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        write_outcome(argv, rc)
    return rc


if __name__ == "__main__":
    from backend.cli import run_cli
    sys.exit(run_cli(cli))
