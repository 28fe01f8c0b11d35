"""Run store: SQLAlchemy schema and sessions (no torch). ``DATABASE_URL`` or SQLite in ``CSN_DATA_DIR``."""
from .config import database_url, runs_dir
from .models import (ACTIVE, CANCELLED, CRASHED, FAILED, FINISHED, QUEUED, RUNNING, SUCCEEDED,
                     Architecture, Base, Checkpoint, Metric, Run, Study, StudyRun, Worker, as_utc,
                     utcnow)
from .session import (StoreError, check_database, dispose_engines, get_engine, read_session,
                      safe_url, write)
from .store import add_metrics

__all__ = [
    "database_url", "runs_dir", "Base", "Architecture", "Run", "Metric", "Checkpoint",
    "Worker", "Study", "StudyRun", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "CRASHED", "ACTIVE",
    "FINISHED", "utcnow", "as_utc", "get_engine", "dispose_engines", "read_session", "write",
    "add_metrics", "StoreError", "check_database", "safe_url",
]
