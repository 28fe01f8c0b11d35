"""Fine-tuning controls: which parts of a CSN train, and how BatchNorm behaves while they do.

The backbone is the stem (``conv1``, ``pool1``) and the stages ``conv2`` .. ``conv5``
(``pool2`` sits after conv2); the head is ``head`` (pooling, dropout, classifier).

- ``frozen_stages = N`` (as mmaction2's ``frozen_stages``): -1 trains everything; 0 freezes
  the stem; N in 1..4 freezes the stem and the first N stages (conv2 .. conv{N+1}). A frozen
  module's parameters get ``requires_grad=False`` and are left out of the optimiser, and the
  module is kept in eval mode during training, so its BatchNorm running statistics stay
  unchanged too: a frozen part is bit-identical after training.
- ``norm_eval`` (as mmaction2's ``norm_eval``): every BatchNorm layer of the model is kept in
  eval mode during training: it normalises with its stored running mean/variance, which
  never update. Its affine weight and bias still train unless their stage is frozen.
- ``linear_probe``: only the head trains: the whole backbone is frozen (as ``frozen_stages
  = 4``) and therefore in eval mode.
- ``backbone_lr_mult``: the backbone's learning rate is the head's times this (the warm-up
  and cosine schedule scale both alike); 0 is refused (freeze instead).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from backend.training.config import check_finetune

STEM = ("conv1", "pool1")
STAGES = ("conv2", "conv3", "conv4", "conv5")
HEAD = "head"


@dataclass(frozen=True)
class FinetunePlan:
    """The controls of one run (TrainConfig's fields of the same names)."""

    frozen_stages: int = -1
    norm_eval: bool = False
    linear_probe: bool = False
    backbone_lr_mult: float = 1.0

    def __post_init__(self) -> None:
        check_finetune(self.frozen_stages, self.backbone_lr_mult)

    @classmethod
    def of(cls, cfg: Any) -> "FinetunePlan":
        return cls(cfg.frozen_stages, cfg.norm_eval, cfg.linear_probe, cfg.backbone_lr_mult)

    @property
    def frozen_modules(self) -> tuple[str, ...]:
        """Names of the top-level modules that do not train."""
        if self.linear_probe:
            return (*STEM, *STAGES, "pool2")
        if self.frozen_stages < 0:
            return ()
        names = (*STEM, *STAGES[:self.frozen_stages])
        return (*names, "pool2") if self.frozen_stages >= 1 else names


def freeze(model: nn.Module, plan: FinetunePlan) -> dict[str, int]:
    """Set ``requires_grad`` from the plan; returns :func:`param_counts`."""
    frozen = set(plan.frozen_modules)
    for name, child in model.named_children():
        for p in child.parameters():
            p.requires_grad_(name not in frozen)
    return param_counts(model)


def param_counts(model: nn.Module) -> dict[str, int]:
    """Parameters (every element of weights and biases, BN affine included) that train or not."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": trainable, "frozen_params": total - trainable, "total_params": total}


def set_train_mode(model: nn.Module, plan: FinetunePlan) -> None:
    """``model.train()``, then frozen modules and (with norm_eval) every BatchNorm to eval."""
    model.train()
    frozen = set(plan.frozen_modules)
    for name, child in model.named_children():
        if name in frozen:
            child.eval()
    if plan.norm_eval:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def param_groups(model: nn.Module, lr: float, plan: FinetunePlan) -> list[dict[str, Any]]:
    """Optimiser groups of the trainable parameters: the head at ``lr`` first, then the
    backbone at ``lr * backbone_lr_mult`` (an empty group is left out)."""
    head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(HEAD + ".")]
    body = [p for n, p in model.named_parameters()
            if p.requires_grad and not n.startswith(HEAD + ".")]
    groups = [{"params": head, "lr": lr, "name": "head"},
              {"params": body, "lr": lr * plan.backbone_lr_mult, "name": "backbone"}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    return groups


def planned_counts(spec: Any, plan: FinetunePlan) -> dict[str, int]:
    """:func:`param_counts` for a spec without allocating its weights (a meta-device model)."""
    import torch

    from backend.csn import build_model
    with torch.device("meta"):
        model = build_model(spec)
    return freeze(model, plan)
