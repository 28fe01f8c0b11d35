import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as backend/__init__.py: no spinning threads

import pytest  # noqa: E402
import torch  # noqa: E402

# Two cores: keep each test process to its share (two torch processes each using both cores
# stall each other badly on depthwise conv).
torch.set_num_threads(int(os.environ.get("CSN_TEST_THREADS", "1")))


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A fresh data dir (SQLite store, runs/) under tmp_path, the only data root; yields it."""
    import db

    monkeypatch.setenv("CSN_DATA_DIR", str(tmp_path / "var"))
    for k in ("CSN_DATA_ROOTS", "DATABASE_URL"):
        monkeypatch.delenv(k, raising=False)
    db.dispose_engines()
    (tmp_path / "var").mkdir(exist_ok=True)
    yield tmp_path / "var"
    db.dispose_engines()
