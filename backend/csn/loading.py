"""Specs from outside (a CLI argument, an upload, a queue row, a checkpoint): bounded reading,
``{"preset": NAME, ...}`` documents, and what a partial spec took from the defaults."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple

from .bounds import MAX_JSON_BYTES, _str, check_tree, load_json, show
from .presets import preset
from .spec import STAGE_NAMES, ArchSpec, SpecError, StageSpec


class LoadedSpec(NamedTuple):
    spec: Any                  # ArchSpec
    filled: list[str]          # fields the document left out, taken from the defaults

    def note(self) -> str:
        """'' or one line saying what was filled in from the defaults."""
        if not self.filled:
            return ""
        return f"filled from defaults: {', '.join(self.filled[:12])}" + (
            f" and {len(self.filled) - 12} more" if len(self.filled) > 12 else "")


def defaults_filled(d: dict[str, Any]) -> list[str]:
    """The spec and stage fields a spec dict leaves out (they take the dataclass defaults)."""
    out = [f.name for f in fields(ArchSpec) if f.name not in d]
    stage_fields = [f.name for f in fields(StageSpec)]
    for name, st in zip(STAGE_NAMES, d.get("stages") or []):
        if isinstance(st, dict):
            out += [f"{name}_x.{f}" for f in stage_fields if f not in st]
    return out


def spec_from_data(data: Any, what: str = "spec", *, validate: bool = True) -> LoadedSpec:
    """An ArchSpec from untrusted parsed data: a spec dict (``{"spec": {...}}`` as
    ``count --json`` writes it too), ``{"preset": NAME, FIELD: VALUE, ...}``, or an ArchSpec.
    Bounded (:func:`check_tree`); validated unless ``validate=False``. Raises SpecError."""
    if isinstance(data, ArchSpec):
        loaded = LoadedSpec(data, [])
    else:
        check_tree(data, what)
        if isinstance(data, dict) and isinstance(data.get("spec"), dict) and "stages" not in data:
            data = data["spec"]
        if isinstance(data, dict) and "preset" in data:
            rest = {k: v for k, v in data.items() if k != "preset"}
            _str("preset", data["preset"])
            loaded = LoadedSpec(preset(data["preset"], **rest), [])
        else:
            loaded = LoadedSpec(ArchSpec.from_dict(data), defaults_filled(data)
                                if isinstance(data, dict) else [])
    if validate:
        loaded.spec.validate()
    return loaded


def spec_from_text(text: str | bytes, what: str = "spec", *, validate: bool = True) -> LoadedSpec:
    """:func:`spec_from_data` of JSON text (bounded by :func:`load_json`)."""
    return spec_from_data(load_json(text, what), what, validate=validate)


def read_spec_file(path: Any, *, validate: bool = True) -> LoadedSpec:
    """A spec JSON file, refused unread when larger than MAX_JSON_BYTES."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise SpecError("", f"cannot read spec file {show(str(p), 120)}: {e.strerror}") from None
    return spec_from_text(raw, f"spec file {p.name[:80]}", validate=validate)
