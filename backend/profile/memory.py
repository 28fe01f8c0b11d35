"""Training memory from ``plan(spec)``: activations kept for backward, per counter row.

Exact for float32 on CPU (checked against ``torch.autograd.graph.saved_tensors_hooks``,
storages deduplicated, parameters and buffers excluded). What each op keeps, as PyTorch's
autograd formulas do:

* a conv keeps its input (the previous row's output, counted there) and weight (a parameter);
* BatchNorm keeps its input (the conv output) and two per-channel statistics (mean, invstd);
* ReLU keeps its output; the residual sum keeps nothing; the block's ReLU output is counted on
  the block's last body row;
* max-pool keeps its input and int64 indices of its output's size; its output is kept by the
  next conv; the stem row also holds the input clip (kept by conv1);
* the fc head keeps the pooled features (global mean keeps nothing); dropout keeps its noise
  tensor (CPU: float32, torch multiplies by it; CUDA: ``native_dropout``'s bool mask) and its
  output instead; a conv head's average pool output is kept by the 1x1x1 conv.

A row's bytes are what it *produces* that some op keeps, so shared tensors count once.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from backend.csn import ArchSpec
from backend.csn.counting import count
from backend.csn.spec import LayerPlan, plan

FLOAT_BYTES = 4
INDEX_BYTES = 8          # max-pool indices (int64)


class LayerMemory(NamedTuple):
    name: str
    activation_bytes: int       # kept for backward at this batch
    largest_tensor_bytes: int   # the biggest single tensor the row produces (working set)


class MemoryModel(NamedTuple):
    batch: int
    layers: list[LayerMemory]
    param_bytes: int
    buffer_bytes: int           # BN running statistics and counters
    grad_bytes: int
    optimizer_bytes: int
    loss_bytes: int             # log-softmax output + int64 targets
    optimizer: str

    @property
    def activation_bytes(self) -> int:
        return sum(l.activation_bytes for l in self.layers)

    @property
    def workspace_bytes(self) -> int:
        """Gradient of a row's output and of its input alive together in backward."""
        return 2 * max((l.largest_tensor_bytes for l in self.layers), default=0)

    @property
    def peak_bytes(self) -> int:
        """Predicted training peak: weights, grads, optimizer state, everything kept for
        backward and the backward working set (an upper bound: grads and activations
        overlap only partly)."""
        return (self.param_bytes + self.buffer_bytes + self.grad_bytes + self.optimizer_bytes
                + self.activation_bytes + self.loss_bytes + self.workspace_bytes)


def _numel(c: int, size: tuple[int, int, int]) -> int:
    return c * math.prod(size)


def mask_bytes(device: str) -> int:
    """Bytes per element of the dropout mask autograd keeps on ``device``."""
    return 1 if str(device).startswith("cuda") else FLOAT_BYTES


def activation_rows(spec: ArchSpec, batch: int, device: str = "cpu") -> list[LayerMemory]:
    """Per counter row, bytes kept for backward at ``batch`` (float32, see module doc)."""
    layers = list(plan(spec))
    rows = []
    for i, p in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        kept, largest = _row_bytes(p, nxt, spec, batch, mask_bytes(device))
        rows.append(LayerMemory(p.name, kept, largest))
    return rows


def _row_bytes(p: LayerPlan, nxt: LayerPlan | None, spec: ArchSpec, n: int,
               mask: int) -> tuple[int, int]:
    out = n * _numel(p.c_out, p.out_size) * FLOAT_BYTES
    if p.kind == "maxpool":                     # indices + output (kept by the next conv)
        return out // FLOAT_BYTES * INDEX_BYTES + out, out
    if p.kind == "avgpool":                     # conv head pool: output kept by the 1x1x1 conv
        return (0 if spec.dropout > 0 else out), out
    if p.kind == "fc":
        return _head_bytes(p, spec, n, mask), out
    kept = out + 2 * p.c_out * FLOAT_BYTES      # BN input + per-channel mean / invstd
    last_body = p.block and p.role != "shortcut" and (
        nxt is None or nxt.block != p.block or nxt.role == "shortcut")
    if p.relu or (p.block and not last_body and p.role != "shortcut"):
        kept += out                             # ReLU output, or BN output the next conv keeps
    if last_body:
        kept += out                             # the block's ReLU output
    if p.name == "conv1":
        kept += n * _numel(p.c_in, p.in_size) * FLOAT_BYTES   # the input clip, kept by conv1
    return kept, out


def _head_bytes(p: LayerPlan, spec: ArchSpec, n: int, mask: int) -> int:
    feats = n * _numel(p.c_in, p.in_size)
    if spec.dropout > 0:                        # mask + dropped features (kept by fc)
        return feats * (mask + FLOAT_BYTES)
    if spec.head == "fc":
        return feats * FLOAT_BYTES              # pooled features, kept by the linear layer
    return 0                                    # conv head: its input is counted upstream


def optimizer_state_bytes(param_count: int, n_tensors: int, optimizer: str) -> int:
    """Optimizer state after the first step: SGD momentum one buffer per parameter, AdamW
    two (exp_avg, exp_avg_sq) plus a float32 ``step`` per tensor; plain SGD none."""
    if optimizer == "sgd":
        return param_count * FLOAT_BYTES
    if optimizer == "sgd-nomomentum":
        return 0
    if optimizer == "adamw":
        return 2 * param_count * FLOAT_BYTES + n_tensors * FLOAT_BYTES
    raise ValueError(f"optimizer must be sgd, sgd-nomomentum or adamw, got {optimizer!r}")


OPTIMIZERS = ("sgd", "sgd-nomomentum", "adamw")


def _tensor_counts(spec: ArchSpec) -> tuple[int, int, int]:
    """(parameter tensors, BN layers, parameter elements) of the built model."""
    layers = count(spec).layers
    bn = sum(1 for l in layers if l.bn_params)
    tensors = sum(1 + (2 if l.bn_params else 0) + (1 if l.bias_params else 0)
                  for l in layers if l.params)
    return tensors, bn, count(spec).totals.all_params


def memory_model(spec: ArchSpec, batch: int, optimizer: str = "sgd",
                 device: str = "cpu") -> MemoryModel:
    """The training memory of ``spec`` at ``batch`` clips (float32) on ``device``."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    tensors, bn_layers, n_params = _tensor_counts(spec)
    report = count(spec)
    bn_channels = sum(l.bn_params // 2 for l in report.layers)
    pb = n_params * FLOAT_BYTES
    return MemoryModel(
        batch=batch, layers=activation_rows(spec, batch, device), param_bytes=pb,
        buffer_bytes=2 * bn_channels * FLOAT_BYTES + bn_layers * INDEX_BYTES, grad_bytes=pb,
        optimizer_bytes=optimizer_state_bytes(n_params, tensors, optimizer),
        loss_bytes=batch * (spec.num_classes * FLOAT_BYTES + INDEX_BYTES), optimizer=optimizer)


def max_batch(spec: ArchSpec, memory_bytes: int, optimizer: str = "sgd",
              device: str = "cpu") -> int:
    """The largest batch whose predicted training peak fits ``memory_bytes`` (0: none fits).

    Every batch-dependent term is linear in the batch, so two evaluations give it exactly."""
    one, two = (memory_model(spec, b, optimizer, device).peak_bytes for b in (1, 2))
    per_clip, fixed = two - one, 2 * one - two
    if memory_bytes < one:
        return 0
    return int((memory_bytes - fixed) // per_clip)


def parse_bytes(text: str) -> int:
    """'24GB', '512MiB', '1.5e9' -> bytes (GB = 10^9, GiB = 2^30)."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    s = str(text).strip().upper().replace(" ", "")
    num = s.rstrip("KMGTIB")
    unit = s[len(num):]
    try:
        value = float(num)
    except ValueError:
        raise ValueError(f"--memory: expected a size like 24GB, got {len(s)} characters "
                         "that are not one") from None
    if unit not in units or not (0 < value < 1e18):
        raise ValueError("--memory: expected a positive size with unit B, KB, MB, GB, TB or KiB..TiB")
    return int(value * units[unit])
