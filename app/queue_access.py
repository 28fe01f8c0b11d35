"""The pages' calls into the job queue and the run database (``jobs.api``): whether they
answer (cached), and the few calls whose failure a page shows instead of a traceback."""
from __future__ import annotations

import os
import time
from typing import Any

import streamlit as st

_HEALTH: dict[tuple, tuple[float, str]] = {}
HEALTH_TTL_S = (300.0, 10.0)   # re-check a healthy / a broken configuration after this long


def _jobs_env() -> tuple:
    return tuple(os.environ.get(k) for k in ("CSN_DATA_DIR", "DATABASE_URL", "HUEY_REDIS_URL"))


def jobs_api():
    """(the jobs API module, "") when the job queue and the run database answer; otherwise
    (None, why) - a missing package, an unreachable Redis/PostgreSQL, a damaged database.
    The answer is cached per configuration (``HEALTH_TTL_S``)."""
    try:  # imported here: jobs/ and db/ are optional for the builder, and failing is the answer
        from jobs import api
    except Exception as e:  # noqa: BLE001
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
    api, why = jobs_api()
    if api is None:
        st.error(f"{purpose} needs the job queue and the run database, but {why.rstrip('.')}. Fix the "
                 "configuration (HUEY_REDIS_URL, DATABASE_URL, CSN_DATA_DIR) and reload; the "
                 "Builder works without them.", icon=":material/error:")
        st.stop()
    return api


def list_runs_or_stop(api, limit: int = 500) -> list:
    """``api.list_runs``; on a database error an error message and ``st.stop()``."""
    try:
        return api.list_runs(limit=limit)
    except Exception as e:  # a broken database: tell, do not crash
        st.error(f"Cannot read the run database: {e}")
        st.stop()


def save_architecture(name: str, spec: Any) -> tuple[bool, str]:
    """Save ``spec`` under ``name`` in the database; (ok, message for people)."""
    api, why = jobs_api()
    if api is None:
        return False, f"Cannot save: {why}."
    try:
        api.save_architecture(name, spec)
    except Exception as e:  # shown inline, never as a traceback
        return False, f"Cannot save {name!r}: {e}"
    return True, f"Saved architecture {name!r}."


def worker_rows(status: dict) -> list[dict]:
    """The Train page's resource inventory: one row per worker of ``worker_status()``."""
    return [{"worker": w["id"], "alive": w["alive"], "GPUs": ",".join(w["gpus"]) or "none",
             "GPUs busy": ",".join(w["busy_gpus"]) or "-",
             "threads busy": f"{w['busy_threads']} of {w['threads'] or '?'}",
             "runs": ", ".join(f"#{i}" for i in w["runs"]) or "-"} for w in status["workers"]]
