"""Per-row forward / backward time of a built model, measured with module hooks.

Every counter row (``plan(spec)`` name) maps to the module that computes it. A clock keeps a
stack of open rows and charges the time between two hook events to the row on top, so each
row gets its *exclusive* time: forward hooks open and close it in the forward pass, hooks on
the autograd nodes its forward created in the backward pass. The residual sum and ReLU of a block are charged
to the block's last body row (as its memory is); the head's pooling, flatten and dropout to
``fc``; the loss, ``zero_grad`` and optimizer step to ``other``. CUDA is synchronised at
every event.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from backend.csn.spec import ArchSpec, plan

OTHER = "other"


def row_modules(model: nn.Module, spec: ArchSpec) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    """({row name: module computing it}, {last body row of a block: the block module}).

    ``head.pool`` of a conv head runs inside the head module and is timed in ``fc``."""
    rows: dict[str, nn.Module] = {}
    blocks: dict[str, nn.Module] = {}
    layers = list(plan(spec))
    for i, p in enumerate(layers):
        if p.block:
            stage, idx = p.block.split("_")
            block = getattr(model, stage)[int(idx) - 1]
            rows[p.name] = getattr(block, p.role)
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if p.role != "shortcut" and (nxt is None or nxt.block != p.block or nxt.role == "shortcut"):
                blocks[p.name] = block
        elif p.name == "fc":
            rows[p.name] = model.head
        elif p.name != "head.pool":
            rows[p.name] = getattr(model, p.name)
    return rows, blocks


class _Clock:
    """Exclusive time per (phase, row): the interval between events goes to the open row."""

    def __init__(self, sync: Callable[[], None]):
        self.sync = sync
        self.stack: list[str] = []
        self.acc: dict[tuple[str, str], float] = defaultdict(float)
        self.phase = "fwd"
        self.t = 0.0

    def tick(self) -> None:
        self.sync()
        now = time.perf_counter()
        self.acc[(self.phase, self.stack[-1] if self.stack else OTHER)] += now - self.t
        self.t = now

    def push(self, key: str) -> None:
        self.tick()
        self.stack.append(key)

    def pop(self, key: str) -> None:
        self.tick()
        for i in range(len(self.stack) - 1, -1, -1):   # the newest open entry of this row
            if self.stack[i] == key:
                del self.stack[i]
                break

    def start(self, phase: str) -> None:
        self.phase, self.stack = phase, []
        self.sync()
        self.t = time.perf_counter()


@contextmanager
def hooked(model: nn.Module, spec: ArchSpec, clock: _Clock, backward: bool) -> Iterator[None]:
    """Register the clock's hooks on every row module (and block), removed on exit.

    Backward: the autograd nodes a row's forward created (walked from its output back to its
    input) get pre / post hooks, so each node's run is charged to its row, exactly (CPU
    autograd runs nodes one at a time)."""
    rows, blocks = row_modules(model, spec)
    claimed: set[int] = set()
    handles = []
    for key, mod in [*rows.items(), *blocks.items()]:
        handles.append(mod.register_forward_pre_hook(lambda m, i, k=key: clock.push(k)))
        handles.append(mod.register_forward_hook(_fwd_post(clock, key, claimed, backward)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _fwd_post(clock: _Clock, key: str, claimed: set[int], backward: bool):
    def hook(m, inputs, output):
        clock.pop(key)
        if backward and isinstance(output, torch.Tensor) and output.grad_fn is not None:
            stop = {id(t.grad_fn) for t in inputs if isinstance(t, torch.Tensor) and t.grad_fn}
            for node in _own_nodes(output.grad_fn, stop, claimed):
                node.register_prehook(lambda g, k=key: clock.push(k))
                node.register_hook(lambda gi, go, k=key: clock.pop(k))
    return hook


def _own_nodes(root, stop: set[int], claimed: set[int]) -> list:
    """Nodes from ``root`` back to (not including) the input's, not claimed by an inner row;
    parameters' AccumulateGrad nodes are left out (they outlive one step)."""
    todo, found = [root], []
    while todo:
        node = todo.pop()
        if node is None or id(node) in stop or id(node) in claimed:
            continue
        if type(node).__name__ == "AccumulateGrad":
            continue
        claimed.add(id(node))
        found.append(node)
        todo.extend(n for n, _ in node.next_functions)
    return found


def sync_fn(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def time_rows(step: Callable[[_Clock | None], None], model: nn.Module, spec: ArchSpec,
              device: torch.device, repeats: int, train: bool,
              progress: Callable[[float], None] | None = None) -> dict:
    """Median per-row fwd / bwd seconds over ``repeats`` hooked steps, and the median of the
    same number of un-hooked steps, interleaved (so load changes hit both alike)."""
    clock = _Clock(sync_fn(device))
    sync = sync_fn(device)
    step(None)                                     # warm-up: JIT, primitive caches, allocator
    per_rep: list[dict[tuple[str, str], float]] = []
    plain: list[float] = []
    hooked_total: list[float] = []
    for r in range(repeats):
        sync()
        t0 = time.perf_counter()
        step(None)
        sync()
        plain.append(time.perf_counter() - t0)
        clock.acc = defaultdict(float)
        with hooked(model, spec, clock, backward=train):
            t0 = time.perf_counter()
            step(clock)
            sync()
            hooked_total.append(time.perf_counter() - t0)
        per_rep.append(dict(clock.acc))
        if progress:
            progress((r + 1) / repeats)
    keys = set().union(*per_rep)
    med = {k: statistics.median(rep.get(k, 0.0) for rep in per_rep) for k in keys}
    return {"rows": med, "step_s": statistics.median(plain),
            "hooked_step_s": statistics.median(hooked_total), "step_samples_s": plain}
