"""The records every source format shares: facts, key records, units and the format record.

A source project's module (``pytorchvideo.py``, ``mmaction2.py``, ``vmz.py``, ``caffe2.py``)
is one :class:`SourceFormat`: how to recognise its keys, where each key goes, what its code
fixes, what must be asked for, its published models and its stage grouping.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import torch


class ConvertError(ValueError):
    """A checkpoint that cannot be converted; the message says why."""


class Fact(NamedTuple):
    value: Any
    source: str        # "flag --pool1", "file meta['cfg']", "model csn_r101 (...)", "peer code (...)"


class Key(NamedTuple):
    """Where one source tensor goes. ``block``: (stage, block) or (comp,) for Caffe2, () for the
    stem and the classifier; ``unit`` orders the convs inside a block ("short" = shortcut);
    ``param``: "conv", a BN field (weight, bias, mean, var) or fc_weight / fc_bias."""
    part: str            # stem | block | fc
    block: tuple = ()
    unit: str = ""
    param: str = ""

SKIP = Key("skip")       # bookkeeping tensors (num_batches_tracked, Caffe2 momenta, ...)

_BN = {"weight": "weight", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def bn_field(param: str) -> str | None:
    """Our BN field of a torch BN parameter name (``running_mean`` -> ``mean``)."""
    return _BN.get(param)


def unit_param(part: str, block: tuple, unit: str, is_conv: bool, param: str) -> Key | None:
    """The key record of one conv or BN tensor of a unit (None: not a tensor we know)."""
    if param == "num_batches_tracked":
        return SKIP
    p = ("conv" if param == "weight" else None) if is_conv else bn_field(param)
    return Key(part, block, unit, p) if p else None


@dataclass
class Source:
    """A checkpoint's tensors plus what it says about itself."""
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = ""

@dataclass
class Unit:
    """One conv (+ its BN) of the source network."""
    conv: torch.Tensor | None = None
    bn: dict[str, torch.Tensor] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)


#: Units grouped by block: ``{block: (body units in order, shortcut or None)}``.
Blocks = dict[tuple, tuple[list[Unit], "Unit | None"]]


@dataclass(frozen=True)
class SourceFormat:
    """Everything the converter knows about one source project's checkpoints."""
    name: str
    detect: Callable[[set[str]], bool]                   # do these keys look like ours?
    parse_key: Callable[[str], Key | None]               # one source key -> where it goes
    code_facts: dict[str, Fact]                          # fixed by the peer's code (cited)
    required: dict[str, str] = field(default_factory=dict)   # no default: fact -> flag hint
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # published models
    default_norm: tuple | None = None                    # (mean, std, why) when the file is silent
    group_stages: Callable[[Blocks], list] | None = None  # None: blocks keyed (stage, index)
    file_facts: Callable[[Source], dict[str, Fact]] | None = None   # what the file says of itself
    derived_facts: Callable[[dict[str, Fact]], dict[str, Fact]] | None = None  # from other facts
