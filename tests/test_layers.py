"""The layering is a checked contract: import-linter's contracts in pyproject.toml, and the
torch-free claim of jobs/ and db/ checked at run time (import-linter checks direct imports)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=REPO, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "kept, 0 broken" in out.stdout


@pytest.mark.parametrize("modules", ["jobs.api, jobs.tasks, jobs.worker, jobs.supervise, jobs.track",
                                     "db, db.query, db.store"])
def test_queue_and_store_import_no_torch(modules):
    code = f"import sys, {modules}; print(sorted(m for m in ('torch', 'numba', 'av') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
