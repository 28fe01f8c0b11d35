"""The source formats the converter reads, in detection order. A new source project is one
module with a ``FORMAT`` record, added here."""
from __future__ import annotations

from typing import Any

from . import caffe2, mmaction2, pytorchvideo, vmz
from .records import ConvertError, SourceFormat

FORMATS: dict[str, SourceFormat] = {f.name: f for f in (pytorchvideo.FORMAT, mmaction2.FORMAT,
                                                         vmz.FORMAT, caffe2.FORMAT)}
LAYOUTS = tuple(FORMATS)
#: Published models of every format: ``{name: {**facts, "layout": format}}``.
MODELS: dict[str, dict[str, Any]] = {name: {**m, "layout": f.name}
                                     for f in FORMATS.values() for name, m in f.models.items()}


def source_format(layout: str) -> SourceFormat:
    if layout not in FORMATS:
        raise ConvertError(f"unknown layout {layout!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[layout]


def detect_layout(sd: dict) -> str:
    """The format whose key names these are (the first that recognises them)."""
    keys = set(sd)
    for f in FORMATS.values():
        if f.detect(keys):
            return f.name
    sample = ", ".join(sorted(keys)[:6])
    raise ConvertError(f"cannot tell the checkpoint layout from its keys (e.g. {sample}); "
                       f"pass --layout one of {', '.join(FORMATS)}")
