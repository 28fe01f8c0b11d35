"""What autograd really keeps for backward: the bytes seen by ``saved_tensors_hooks``."""
from __future__ import annotations

from collections import Counter

import torch
from torch import nn


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> tuple[int, Counter]:
    """(bytes, {dtype name: bytes}) of the storages one forward of ``model`` keeps for
    backward, each storage once; parameters and buffers (weights, BN running statistics) are
    not activations and are left out. Keeps the graph alive until the bytes are counted."""
    own = {_key(p) for p in model.parameters()} | {_key(b) for b in model.buffers()}
    seen: dict[int, tuple[int, str]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        k = _key(t)
        if k not in own and k not in seen:
            seen[k] = (t.untyped_storage().nbytes(), str(t.dtype).replace("torch.", ""))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    by_dtype: Counter = Counter()
    for nbytes, dtype in seen.values():
        by_dtype[dtype] += nbytes
    del out
    return sum(by_dtype.values()), by_dtype
