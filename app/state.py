"""Session-state keys, number formatting and calls into jobs shared by the pages."""
from __future__ import annotations

import math
from typing import Any

FORM_PREFIX = "bld_"            # builder form fields (kept across page switches)
# form fields kept across page switches: the builder's and the Train page's
KEPT_PREFIXES = (FORM_PREFIX, "train_", "synth_", "hp_")
KEPT_EXCEPT = {"train_workers"}  # a table, not an input
BUILDER_SPEC = "builder_spec"   # last valid builder spec, as a dict (read by Train)
_PREFIXES = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def fmt_count(v: float, unit: str = "") -> str:
    """Three significant digits with an SI prefix: 13080000 -> '13.1 M'."""
    if v == 0:
        return f"0 {unit}".strip()
    for p, scale in reversed(_PREFIXES.items()):
        if abs(v) >= scale:
            break
    x = v / scale
    digits = max(0, 2 - int(math.floor(math.log10(abs(x)))))
    return f"{x:.{digits}f} {p}{unit}".strip()


def fmt_delta(cur: float, ref: float, unit: str = "") -> str:
    """'-64% (-18.9 G)' style change of ``cur`` against ``ref``."""
    diff = cur - ref
    sign = "-" if diff < 0 else "+"
    pct = f"{sign}{abs(diff) / ref * 100:.0f}% " if ref else ""
    return f"{pct}({sign}{fmt_count(abs(diff), unit)})"


def keep_form_state(session_state: Any) -> None:
    """Re-assign the Builder's and the Train page's widget keys so Streamlit keeps them while
    another page shows (it drops a widget's state on a run that does not draw it)."""
    for k in list(session_state.keys()):
        if isinstance(k, str) and k.startswith(KEPT_PREFIXES) and k not in KEPT_EXCEPT:
            session_state[k] = session_state[k]


def _design_file():
    from backend.paths import data_dir

    return data_dir() / "builder_design.json"


def remember_design(spec) -> None:
    """Keep the builder's last valid design on disk, so a fresh session (/train opened
    directly, a reload) starts from it. Best effort: a read-only data dir just skips it."""
    try:
        f = _design_file()
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(spec.to_json(indent=1))
    except OSError:
        pass


def load_design():
    """The design :func:`remember_design` kept, as an ArchSpec, or None."""
    from backend.csn import ArchSpec, SpecError

    try:
        return ArchSpec.from_json(_design_file().read_text()).validate()
    except (OSError, ValueError, TypeError, SpecError):
        return None


_HEALTH: dict[tuple, tuple[float, str]] = {}
HEALTH_TTL_S = (300.0, 10.0)   # re-check a healthy / a broken configuration after this long


def _jobs_env() -> tuple:
    import os
    return tuple(os.environ.get(k) for k in ("CSN_DATA_DIR", "DATABASE_URL", "HUEY_REDIS_URL"))


def jobs_api():
    """(the jobs API module, "") when the job queue and the run database answer; otherwise
    (None, why) - a missing package, an unreachable Redis/PostgreSQL, a damaged database.
    The answer is cached per configuration (``HEALTH_TTL_S``)."""
    import time
    try:
        from jobs import api
    except Exception as e:  # noqa: BLE001 - jobs/ and db/ are optional for the builder
        return None, f"the job queue is not available ({type(e).__name__}: {e})"
    key, now = _jobs_env(), time.monotonic()
    hit = _HEALTH.get(key)
    if hit is None or now - hit[0] > HEALTH_TTL_S[bool(hit[1])]:
        try:
            why = api.health() or ""
        except Exception as e:  # noqa: BLE001 - whatever it is, it is the reason
            why = f"{type(e).__name__}: {e}"
        hit = _HEALTH[key] = (now, why)
    return (None, hit[1]) if hit[1] else (api, "")


def require_jobs_api(purpose: str = "This page"):
    """The jobs API module; otherwise one error banner (the reason; the Builder still works)
    and ``st.stop()``."""
    import streamlit as st
    api, why = jobs_api()
    if api is None:
        st.error(f"{purpose} needs the job queue and the run database, but {why.rstrip('.')}. Fix the "
                 "configuration (HUEY_REDIS_URL, DATABASE_URL, CSN_DATA_DIR) and reload; the "
                 "Builder works without them.", icon=":material/error:")
        st.stop()
    return api


def worker_rows(status: dict) -> list[dict]:
    """The Train page's resource inventory: one row per worker of ``worker_status()``."""
    return [{"worker": w["id"], "alive": w["alive"], "GPUs": ",".join(w["gpus"]) or "none",
             "GPUs busy": ",".join(w["busy_gpus"]) or "-",
             "threads busy": f"{w['busy_threads']} of {w['threads'] or '?'}",
             "runs": ", ".join(f"#{i}" for i in w["runs"]) or "-"} for w in status["workers"]]


def list_runs_or_stop(api, limit: int = 500) -> list:
    """``api.list_runs``; on a database error an error message and ``st.stop()``."""
    import streamlit as st
    try:
        return api.list_runs(limit=limit)
    except Exception as e:  # a broken database: tell, do not crash
        st.error(f"Cannot read the run database: {e}")
        st.stop()


def save_architecture(name: str, spec) -> tuple[bool, str]:
    """Save ``spec`` under ``name`` in the database; (ok, message for people)."""
    api, why = jobs_api()
    if api is None:
        return False, f"Cannot save: {why}."
    try:
        api.save_architecture(name, spec)
    except Exception as e:  # shown inline, never as a traceback
        return False, f"Cannot save {name!r}: {e}"
    return True, f"Saved architecture {name!r}."


def url_reachable(url: str, timeout: float = 1.0) -> tuple[bool, str]:
    """(True, "") when ``url`` answers an HTTP GET within ``timeout``; else (False, why)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status < 500, f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        return e.code < 500, f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        return False, str(getattr(e, "reason", e))


def synth_available() -> bool:
    """Whether ``backend.synth`` (the generated motion dataset) is installed."""
    import importlib.util

    return importlib.util.find_spec("backend.synth") is not None


def generate_synth(out: str, per_class: int, seed: int, size: int, frames: int,
                   timeout: float = 900) -> tuple[bool, str]:
    """Run ``python -m backend.synth`` into ``out``; (ok, message for people)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "backend.synth", "--out", out, "--per-class", str(per_class),
           "--seed", str(seed), "--size", str(size), "--frames", str(frames)]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"generation took longer than {timeout:.0f} s"
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"exit status {p.returncode}"
    return True, f"generated {out}"


def spec_from_choice(kind: str, value: Any):
    """An ArchSpec from the Train page's choice: ('builder', dict) | ('saved', dict) | ('preset', name)."""
    from backend.csn import ArchSpec, preset

    if kind == "preset":
        return preset(value)
    return ArchSpec.from_dict(value)


def checked_dataset(typed: str, require: str | None = None) -> tuple[str, bool]:
    """``(resolved path, usable)`` for a dataset path typed on a page: inside the data roots
    (``backend.paths.check_dataset``) and existing, with ``require`` (e.g. ``classes.txt``)
    inside it when given. Shows the refusal or what is missing; never the file's contents."""
    from pathlib import Path

    import streamlit as st

    from backend.paths import PathRefused, check_dataset

    if not typed:
        return "", False
    try:
        dataset = str(check_dataset(typed))
    except PathRefused as e:
        st.error(str(e), icon=":material/block:")
        return "", False
    if not (Path(dataset) / (require or "")).exists():
        st.error(f"No dataset with a {require} at {typed}" if require
                 else f"No such file or folder in the data roots: {typed}")
        return dataset, False
    return dataset, True
