"""What the pages keep: form values across page switches, and the Builder's last valid design
across sessions (so /train opened directly, or after a reload, starts from it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.csn import ArchSpec, SpecError
from backend.paths import data_dir

FORM_PREFIX = "bld_"            # builder form fields (kept across page switches)
# form fields kept across page switches: the builder's and the Train page's
KEPT_PREFIXES = (FORM_PREFIX, "train_", "synth_", "hp_")
KEPT_EXCEPT = {"train_workers"}  # a table, not an input
BUILDER_SPEC = "builder_spec"   # last valid builder spec, as a dict (read by Train)


def keep_form_state(session_state: Any) -> None:
    """Re-assign the Builder's and the Train page's widget keys so Streamlit keeps them while
    another page shows (it drops a widget's state on a run that does not draw it)."""
    for k in list(session_state.keys()):
        if isinstance(k, str) and k.startswith(KEPT_PREFIXES) and k not in KEPT_EXCEPT:
            session_state[k] = session_state[k]


def _design_file() -> Path:
    return data_dir() / "builder_design.json"


def remember_design(spec: ArchSpec) -> None:
    """Keep the builder's last valid design on disk. Best effort: a read-only data dir just
    skips it."""
    try:
        f = _design_file()
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(spec.to_json(indent=1))
    except OSError:
        pass


def load_design() -> ArchSpec | None:
    """The design :func:`remember_design` kept, as an ArchSpec, or None."""
    try:
        return ArchSpec.from_json(_design_file().read_text()).validate()
    except (OSError, ValueError, TypeError, SpecError):
        return None
