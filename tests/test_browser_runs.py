"""Runs, Run detail and Compare in a real browser on a seeded store: the pages refresh live
(new runs, new log lines) without a reload. Screenshots land in test-artifacts/."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tests.helpers.runs import seed_run, step_points
from tests.test_browser import ARTIFACTS, _app_page, _env, _need_chromium

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _seed(data, name: str, arch: str, lr: float, steps: int = 400) -> int:
    from backend.csn import preset
    from db import utcnow

    out = data / "runs" / name
    out.mkdir(parents=True)
    (out / "train.log").write_text(f"$ python -m backend.train --arch {arch}\nstarting\n")
    pts = step_points(range(1, steps + 1), {"loss": lambda s: 2.2 / (1 + s * lr), "lr": lr,
                                            "clips_per_s": 20.0}, t0=time.time() - 300, every_s=0.7)
    return seed_run(pts, name=name, spec=preset(arch).to_dict(), dataset="/data/clips",
                    status="running", hparams={"epochs": 4, "lr": lr, "frames": 8, "size": 64},
                    output_dir=str(out), started_at=utcnow() - timedelta(minutes=5),
                    total_steps=4 * steps, total_epochs=4, step=steps, epoch=1)


def _store(tmp_path, monkeypatch):
    """A fresh SQLite store under ``tmp_path/var`` for this process and the app's: (data, env)."""
    import db

    _need_chromium()
    data = tmp_path / "var"
    monkeypatch.setenv("CSN_DATA_DIR", str(data))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    db.dispose_engines()
    return data, _env(data)


def test_run_pages_live_in_browser(tmp_path, monkeypatch):
    from playwright.sync_api import expect

    import db

    data, env = _store(tmp_path, monkeypatch)
    a = _seed(data, "ir-lr0.01", "ir-csn-26", 0.01)
    _seed(data, "ip-lr0.1", "ip-csn-26", 0.1)
    ARTIFACTS.mkdir(exist_ok=True)
    with _app_page(env, 1500, 1400, worker=False) as (url, page):
        page.goto(f"{url}/runs", wait_until="domcontentloaded")
        expect(page.get_by_text("2 of 2 runs")).to_be_visible(timeout=60_000)
        _seed(data, "late", "ir-csn-26", 0.05)              # enqueued elsewhere
        expect(page.get_by_text("3 of 3 runs")).to_be_visible(timeout=15_000)

        page.goto(f"{url}/run?run={a}", wait_until="domcontentloaded")
        charts = page.locator('[data-testid="stPlotlyChart"]')
        expect(charts.first).to_be_visible(timeout=60_000)
        expect(page.locator('[data-testid="stMetric"]', has_text="clips/s")).to_contain_text(
            "20.0")
        with (data / "runs" / "ir-lr0.01" / "train.log").open("a") as f:
            f.write("epoch 1 done: val video@1 0.41\n")
        expect(page.get_by_text("epoch 1 done: val video@1 0.41")).to_be_visible(
            timeout=15_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / "run_detail.png"), full_page=True)

        page.goto(f"{url}/compare", wait_until="domcontentloaded")
        expect(page.get_by_text("What differs")).to_be_visible(timeout=60_000)
        expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(
            timeout=30_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
        db.dispose_engines()
    for shot in ("run_detail.png", "compare.png"):
        assert (ARTIFACTS / shot).stat().st_size > 20_000
