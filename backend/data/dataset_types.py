"""The records a dataset is read into, shared by the generic readers (``backend.data.datasets``) and
the official benchmark layouts (``backend.data.layouts``)."""
from __future__ import annotations

from dataclasses import dataclass


class DatasetError(ValueError):
    """The data cannot be used: missing, empty, or inconsistent. The message says why."""


@dataclass(frozen=True)
class VideoItem:
    path: str
    label: int


@dataclass
class Splits:
    """What a run trains and validates on."""

    classes: list[str]
    train: list[VideoItem]
    val: list[VideoItem]
    source: str  # a human description of where the data came from
