"""A training run's settings: ``TrainConfig``, the trainer's flags derived from its fields, and
the event names the trainer writes.

Torch-free on purpose: the queue (``jobs/``) checks a run's hyper-parameters against these
fields and turns them into the same flags the trainer parses, so a field added, renamed or
retyped here changes the trainer, the CLI and the queue together.

A field's flag is ``--`` + its name with ``-`` for ``_``. Its type comes from the annotation:
``int | None`` also takes ``none``/``auto``; a ``bool`` defaulting to False is a bare switch,
any other ``bool`` gets ``--x`` / ``--no-x``. ``metadata`` holds the help text and, where the
command line differs from the library, ``required`` / ``cli_default`` / ``choices``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

#: Events of ``RUN_DIR/metrics.jsonl``, in the order a run writes them (docs/contracts.md).
EVENTS = ("start", "step", "epoch", "checkpoint", "end")
#: Fields a run's hyper-parameters can never set: the worker sets them from the run row (or
#: leaves them at their defaults).
WORKER_OWNED = ("out", "data", "arch", "resume", "cache_file")


def knob(default: Any, help: str = "", **cli: Any) -> Any:
    """A TrainConfig field with its help text (``cli``: required / cli_default / choices / metavar)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    # --- what to train, on what, where -----------------------------------------------------------
    arch: str | None = knob("ir-csn-26", "preset (ir-csn-26, ...), spec .json file or inline JSON; "
                            "None with finetune_from = the checkpoint's architecture", cli_default=None)
    data: str = knob("", "folder (root/train[, root/val] or root/<class>) or CSV list", required=True)
    out: str = knob("runs/run", "run directory: metrics.jsonl, config.json, checkpoints/", required=True)
    val_data: str | None = knob(None, "validation folder or CSV (default: data's val split)")
    val_fraction: float = knob(0.1, "held out of train when the data has no val split")
    video_root: str | None = knob(None, "CSV lists: folder of the video files (default: the CSV's folder)")
    split: int = knob(1, "UCF101 / HMDB51: the official train/test split", choices=(1, 2, 3))
    # --- clips (paper §4.1) ------------------------------------------------------------------------
    frames: int = knob(8, "T, frames per clip")
    rate: int = knob(2, "take every rate-th frame (30 fps -> 15 fps)")
    size: int = knob(112, "crop S x S (paper: 224)")
    scale_min: int | None = knob(None, "short side jitter low end (default round(size x 8/7): 256 for 224)")
    scale_max: int | None = knob(None, "short side jitter high end (default round(size x 10/7))")
    # --- optimisation (paper §4.1) -----------------------------------------------------------------
    epochs: int = knob(45, "")
    batch_size: int = knob(8, "clips per process (paper: 8 per GPU)")
    optimizer: str = knob("sgd", "sgd: the paper's recipe; adamw: converges faster on tiny nets and data",
                          choices=("sgd", "adamw"))
    lr: float | None = knob(None, "default: sgd 0.01 x global batch / 8 (paper), adamw 0.001 x global batch / 16")
    momentum: float = knob(0.9, "sgd only")
    weight_decay: float = knob(1e-4, "")
    warmup_epochs: float | None = knob(None, "linear warm-up length (default: epochs x 10/45, paper: 10 of 45)")
    warmup_start: float = knob(0.1, "warm-up starts at lr x warmup_start")
    label_smoothing: float = knob(0.0, "")
    amp: str = knob("none", "autocast precision (fp16 uses a GradScaler)", choices=("none", "bf16", "fp16"))
    max_steps_per_epoch: int | None = knob(None, "cap iterations per epoch (tiny runs, smoke tests)")
    max_bad_fraction: float = knob(0.1, "fail when more than this share of an epoch's (or the "
                                   "validation's) videos cannot be read; none readable fails")
    # --- evaluation --------------------------------------------------------------------------------
    eval_clips: int = knob(10, "clips per validation video (paper: 10)")
    eval_every: int = knob(1, "validate every N epochs (and always after the last)")
    # --- run ---------------------------------------------------------------------------------------
    threads: int | None = knob(None, "torch threads (default: cpu_count / processes)")
    workers: int = knob(2, "DataLoader worker processes (0: decode in the main process)")
    prefetch: int = knob(2, "batches prefetched per worker")
    cache_mb: float = knob(1024, "decode each video once into memory up to this many MB; videos "
                           "beyond it are decoded per clip; 0: never cache")
    cache_file: str | None = knob(None, "share the decoded frames between runs on the same data "
                                  "through this file: read what matches, write it when more "
                                  "was decoded (set by the worker or a study, never a queued "
                                  "hyper-parameter)")
    keep_last: int = knob(3, "checkpoints kept (0: all)")
    resume: bool = knob(False, "continue from RUN_DIR's newest checkpoint")
    finetune_from: str | None = knob(None, "start from these weights; a new head if classes differ",
                                     metavar="CKPT")
    # --- fine-tuning controls (backend/training/finetune.py) -------------------------------------------
    frozen_stages: int = knob(-1, "-1: train all; 0: freeze the stem; N: the stem and the first N stages")
    norm_eval: bool = knob(False, "keep every BatchNorm in eval mode (statistics frozen)")
    linear_probe: bool = knob(False, "train only the head (the backbone frozen, in eval mode)")
    backbone_lr_mult: float = knob(1.0, "backbone learning rate = lr x this; the head gets lr")
    seed: int = knob(0, "")
    device: str = knob("auto", "auto | cpu | cuda | cuda:N")
    log_every: int = knob(10, "a step event every N iterations (and the last one)")
    progress: bool | None = knob(None, "tqdm bar (default: when stderr is a terminal)")
    tensorboard: bool = knob(True, "also write TensorBoard event files into RUN_DIR")

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be sgd or adamw, got {self.optimizer!r:.60}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be none, bf16 or fp16, got {self.amp!r:.60}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r:.60}")
        for name in ("frames", "rate", "size", "epochs", "batch_size", "eval_clips", "eval_every",
                     "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.split not in (1, 2, 3):
            raise ValueError(f"split must be 1, 2 or 3, got {self.split}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        check_finetune(self.frozen_stages, self.backbone_lr_mult)


def check_finetune(frozen_stages: int, backbone_lr_mult: float) -> None:
    """The fine-tuning controls' ranges (also checked by ``backend.training.finetune.FinetunePlan``)."""
    if not -1 <= frozen_stages <= 4:
        raise ValueError(f"frozen_stages must be -1 (none) .. 4, got {frozen_stages}")
    if not 0.0 < backbone_lr_mult <= 100.0:
        raise ValueError(f"backbone_lr_mult must be in (0, 100], got {backbone_lr_mult}")


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def field_types(f: Field) -> tuple[type, ...]:
    """The Python types a field accepts, from its annotation (``None`` not included; a float
    field takes an int too)."""
    parts = [p.strip() for p in str(f.type).split("|")]
    kinds = tuple(_TYPES[p] for p in parts if p in _TYPES)
    return (*kinds, int) if float in kinds and int not in kinds else kinds


def optional(f: Field) -> bool:
    return "None" in [p.strip() for p in str(f.type).split("|")]


def field_default(f: Field) -> Any:
    return None if f.default is MISSING else f.default


def train_fields() -> dict[str, Field]:
    """TrainConfig's fields by name."""
    return {f.name: f for f in fields(TrainConfig)}


def flag(name: str) -> str:
    """The trainer flag of a field: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def switch_off_flag(f: Field) -> bool:
    """Whether False needs ``--no-x`` (a switch whose default is on or automatic)."""
    return field_default(f) is not False


def to_args(values: dict[str, Any]) -> list[str]:
    """Trainer flags for field values: ``{"batch_size": 2, "amp": "bf16"}`` ->
    ``["--batch-size=2", "--amp=bf16"]``; None is left out (the default applies); True is a
    bare ``--x``; False is ``--no-x`` where the default is not False, else nothing. A value is
    joined to its flag so that one starting with ``-`` is not read as another flag."""
    by_name, out = train_fields(), []
    for name, value in values.items():
        if value is None:
            continue
        if value is False:
            out += ["--no-" + flag(name)[2:]] if switch_off_flag(by_name[name]) else []
        else:
            out += [flag(name)] if value is True else [f"{flag(name)}={value}"]
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # the contract: last stderr line "error: ..."
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _optional_of(kind: type):
    def parse(s: str):
        return None if s.lower() in ("none", "auto", "") else kind(s)
    parse.__name__ = kind.__name__   # argparse names the type in its error message
    return parse


def add_field_flag(p: argparse.ArgumentParser, f: Field) -> None:
    """One flag for one field, typed and documented from the field."""
    meta, default = f.metadata, f.metadata.get("cli_default", field_default(f))
    kw: dict[str, Any] = {"help": meta.get("help") or None, "default": default}
    for key in ("required", "choices", "metavar"):
        if key in meta:
            kw[key] = meta[key]
    if kw.get("required"):
        kw.pop("default")
    kind = field_types(f)[0]
    if kind is bool:
        kw["action"] = argparse.BooleanOptionalAction if switch_off_flag(f) else "store_true"
    elif kind is not str:
        kw["type"] = _optional_of(kind) if optional(f) else kind
    p.add_argument(flag(f.name), **kw)


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """``python -m backend.train``'s parser: one flag per TrainConfig field."""
    p = _Parser(prog="python -m backend.train", description=description,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(TrainConfig):
        add_field_flag(p, f)
    return p


def config_from_args(argv: list[str] | None = None, description: str | None = None) -> TrainConfig:
    ns = vars(build_parser(description).parse_args(argv))
    cfg = TrainConfig(**{k: v for k, v in ns.items() if k in train_fields()})
    if cfg.arch is None and not cfg.finetune_from and not cfg.resume:
        raise ValueError("--arch is required (or --finetune-from / --resume)")
    return cfg
