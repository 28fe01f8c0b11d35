"""The real app in a real browser: streamlit subprocess + Playwright on Debian's chromium.

Screenshots of every page land in ``test-artifacts/``."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing")


def _env(data: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CSN_DATA_DIR=str(data), HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False", CSN_DEMO_PORT=str(_free_port()),
               CSN_TRAIN_THREADS="1")
    for k in ("DATABASE_URL", "HUEY_REDIS_URL", "CSN_DEMO_URL", "CSN_DATA_ROOTS"):
        env.pop(k, None)
    return env


def _streamlit(env: dict[str, str]):
    """Start the app; yield its URL; stop it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"streamlit did not start:\n{proc.stdout.read().decode()}")
                time.sleep(0.5)
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM,
                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


@contextmanager
def _app_page(env: dict[str, str], width: int, height: int, worker: bool = False):
    """Start the app (and a Huey consumer when ``worker``), open a Chromium page at that
    viewport; yield ``(url, page)``; stop everything afterwards."""
    from playwright.sync_api import sync_playwright

    consumer = subprocess.Popen([sys.executable, "-m", "huey.bin.huey_consumer", "jobs.tasks",
                                 "-w", "1", "-k", "thread"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if worker else None
    app = _streamlit(env)
    try:
        url = next(app)
        with sync_playwright() as p:
            browser = _browser(p)
            try:
                yield url, browser.new_page(viewport={"width": width, "height": height})
            finally:
                browser.close()
    finally:
        app.close()
        if consumer is not None:
            _stop(consumer)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    _need_chromium()
    yield from _streamlit(_env(tmp_path_factory.mktemp("data")))


def _metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]', has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _selectbox(page, label: str):
    return page.locator('[data-testid="stSelectbox"]', has_text=label).locator("input")


def _choose(page, box, option: str) -> None:
    """Pick ``option`` in a Streamlit selectbox (a searchable combobox)."""
    box.click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")


def test_builder_in_browser(app_url):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "builder.png"
    shot.unlink(missing_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(app_url, wait_until="domcontentloaded")
            flops = page.locator('[data-testid="stMetric"]', has_text="Multiply-adds").first
            expect(flops).to_contain_text("10.6 G", timeout=60_000)
            assert _metric(page, "Parameters") == "13.1 M"
            # switch the preset through the selectbox widget
            _choose(page, _selectbox(page, "Start from preset").first, "resnet3d-50")
            expect(flops).to_contain_text("29.5 G", timeout=30_000)
            assert _metric(page, "Parameters") == "46.9 M"
            assert _metric(page, "Interactions") == "5.68 G"
            # change one stage's block type: conv4_x bottleneck -> ir (bottleneck-D)
            _choose(page, _selectbox(page, "Block type").nth(2), "bottleneck-D (ir-CSN)")
            expect(flops).not_to_contain_text("29.5 G", timeout=30_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            # labels fit: pool1's toggle and the metric labels are not cut off
            for label in ("pool1", "T-stride", "Multiply-adds", "Interactions"):
                el = page.locator('[data-testid="stWidgetLabel"], [data-testid="stMetricLabel"]',
                                  has_text=label).first
                assert el.evaluate("e => [e, ...e.querySelectorAll('*')].every(x => x.scrollWidth <= x.clientWidth + 1)"), label
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    assert shot.exists() and shot.stat().st_size > 10_000


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _demo_frame(page, url: str):
    """Open the Demo page; the Gradio demo served by the Streamlit process, inside its iframe."""
    from playwright.sync_api import expect

    page.goto(f"{url}/demo", wait_until="domcontentloaded")
    outer = page.frame_locator('iframe[title="st.iframe"]').first
    demo = outer.frame_locator("iframe#demo")
    expect(demo.get_by_role("button", name="Analyze")).to_be_visible(timeout=180_000)
    return outer, demo


def _analyze_upload(page, demo, video: Path) -> None:
    from playwright.sync_api import expect

    demo.locator('input[type="file"]').first.set_input_files(str(video))
    demo.get_by_role("button", name="Analyze").click()
    expect(demo.get_by_text("explanation (Grad-CAM")).to_be_visible(timeout=240_000)
    expect(demo.locator("video").first).to_be_visible()
    assert demo.locator('[data-testid="label-output-value"], .output-class').count() >= 1


def test_train_watch_and_demo_in_browser(tmp_path):
    """Only `streamlit run app/main.py` + `huey_consumer jobs.tasks`: the Demo tab classifies an
    uploaded H.264 file; Builder -> Train -> a real worker trains -> Run page goes live; the
    finished run's checkpoint then shows up in the demo's model list without a restart."""
    from playwright.sync_api import expect

    from backend.data.encode import write_video
    from backend.synth import make_scene, render

    _need_chromium()
    clip = write_video(tmp_path / "upload.mp4", render(make_scene("rotate-cw", (99,), size=64, frames=32)),
                       fps=15, codec="h264")
    env = _env(tmp_path / "var")
    with _app_page(env, 1400, 1000, worker=True) as (url, page):
        outer, demo = _demo_frame(page, url)
        _analyze_upload(page, demo, clip)
        height = page.locator('iframe[title="st.iframe"]').first.bounding_box()["height"]
        assert height > 1100, height  # sized to the demo's content, not cut off
        expect(demo.get_by_text("Held-out accuracy")).to_be_visible()   # the model card
        _shot(page, "demo")

        page.goto(url, wait_until="domcontentloaded")
        flops = page.locator('[data-testid="stMetric"]', has_text="Multiply-adds").first
        expect(flops).to_contain_text("10.6 G", timeout=60_000)
        _choose(page, _selectbox(page, "Start from preset").first, "ir-csn-26")
        expect(flops).to_contain_text("4.03 G", timeout=30_000)
        page.get_by_role("link", name="Train").first.click()
        expect(page.get_by_text("A worker is running")).to_be_visible(timeout=60_000)

        def setnum(label: str, v: int) -> None:
            box = page.locator('[data-testid="stNumberInput"]', has_text=label)
            box.locator("input").first.fill(str(v))
            box.locator("input").first.press("Enter")
            page.wait_for_timeout(700)

        setnum("Videos per class", 4)
        setnum("Frames per video", 16)
        page.get_by_role("button", name="Generate").click()
        expect(page.get_by_text("Ready:")).to_be_visible(timeout=120_000)
        for label, v in (("Epochs", 1), ("Batch size", 4), ("Crop size", 32),
                         ("Max steps/epoch", 2)):
            setnum(label, v)
        _shot(page, "train")
        page.get_by_role("button", name="Enqueue run").click()
        expect(page.get_by_text("Queued run #1")).to_be_visible(timeout=30_000)
        page.get_by_role("link", name="Open run #1").click()
        progress = page.locator('[data-testid="stProgress"]').first
        # the fragment refreshes the page's run state without a reload
        expect(progress).to_contain_text("succeeded", timeout=300_000)
        expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
        assert page.locator('[data-testid="stException"]').count() == 0
        _shot(page, "run")
        for name in ("runs", "compare"):
            page.goto(f"{url}/{name}", wait_until="domcontentloaded")
            expect(page.locator("h1").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1500)
            assert page.locator('[data-testid="stException"]').count() == 0
            _shot(page, name)

        # the same demo server (started on the first visit) now offers the run
        outer, demo = _demo_frame(page, url)
        demo.get_by_role("button", name="Refresh").click()
        box = demo.get_by_label("Model")
        box.click()
        expect(demo.get_by_role("option", name="run 1:", exact=False)).to_be_visible(timeout=30_000)
        _shot(page, "demo-models")
    for name in ("demo", "train", "run", "runs", "compare", "demo-models"):
        assert (ARTIFACTS / f"{name}.png").exists(), name


def test_launch_a_tiny_study_and_see_its_table_and_figures(tmp_path):
    """Study page: plan a Table 2 study (tiny recipe), launch it on a real worker, watch the
    table and the four figures fill in."""
    from playwright.sync_api import expect

    from tests.helpers.motion_data import make_dataset

    _need_chromium()
    data = make_dataset(tmp_path / "var" / "datasets" / "motion", per_class=3, val_per_class=1)
    env = _env(tmp_path / "var")
    with _app_page(env, 1400, 1400, worker=True) as (url, page):
        page.goto(f"{url}/study", wait_until="domcontentloaded")
        expect(page.get_by_text("No studies yet.")).to_be_visible(timeout=60_000)
        _choose(page, _selectbox(page, "Template"), "table2")
        _choose(page, _selectbox(page, "Recipe"), "tiny")
        width = page.locator('[data-testid="stNumberInput"]', has_text="conv2 width")
        width.locator("input").fill("4")
        width.locator("input").press("Enter")
        path = page.locator('[data-testid="stTextInput"]', has_text="Dataset folder")
        path.locator("input").fill(str(data))
        path.locator("input").press("Enter")
        expect(page.get_by_text("3 runs; recipe tiny")).to_be_visible(timeout=30_000)  # the plan
        page.get_by_role("button", name="Launch study").click()
        expect(page.get_by_text("Launched study #1")).to_be_visible(timeout=30_000)
        progress = page.locator('[data-testid="stProgress"]').first
        expect(progress).to_contain_text("3 succeeded", timeout=300_000)
        table = page.locator('[data-testid="stTable"]').first
        expect(table).to_contain_text("ir-CSN-26")
        expect(table).to_contain_text("62.4")                 # the paper's, labelled
        expect(page.locator('[data-testid="stImage"]')).to_have_count(4, timeout=60_000)
        expect(page.get_by_text("not comparable").first).to_be_visible()
        assert page.locator('[data-testid="stException"]').count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "study.png"), full_page=True)


def _number(page, label: str, value: int) -> None:
    box = page.locator('[data-testid="stNumberInput"]', has_text=label).first.locator("input")
    box.fill(str(value))
    box.press("Enter")


@contextmanager
def _open(url: str, width: int, height: int):
    """A Chromium page at ``url`` with that viewport; closed afterwards."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, wait_until="domcontentloaded")
            yield page
        finally:
            browser.close()


def test_builder_profile_tab_in_browser(app_url):
    """The Profile tab runs backend.profile in the background and shows the figures the
    library computes: activation memory, predicted peak, largest batch, MAC ratios."""
    from playwright.sync_api import expect

    from backend.csn import count, preset
    from backend.profile import max_batch, memory_model, parse_bytes

    spec = preset("ir-csn-26", height=32, width=32, frames=8)
    mm = memory_model(spec, 2)
    with _open(app_url, 1500, 1300) as page:
        flops = page.locator('[data-testid="stMetric"]', has_text="Multiply-adds").first
        expect(flops).to_be_visible(timeout=60_000)    # any design: the data dir keeps the last
        _choose(page, _selectbox(page, "Start from preset").first, "ir-csn-26")
        expect(flops).to_contain_text(f"{count(preset('ir-csn-26')).totals.flops / 1e9:.2f} G",
                                      timeout=30_000)
        _number(page, "Height H", 32)
        expect(flops).not_to_contain_text(f"{count(preset('ir-csn-26')).totals.flops / 1e9:.2f} G",
                                          timeout=30_000)
        _number(page, "Width W", 32)
        expect(flops).to_contain_text(f"{count(spec).totals.flops / 1e6:.1f} M", timeout=30_000)
        page.get_by_role("tab", name="Profile on this machine").click()
        expect(page.get_by_text("Memory to fit")).to_be_visible(timeout=30_000)
        page.locator('[data-testid="stTextInput"]', has_text="Memory to fit").locator(
            "input").fill("1GB")
        page.keyboard.press("Enter")
        expect(page.locator('[data-testid="stMetric"]', has_text="Largest batch").locator(
            '[data-testid="stMetricValue"]')).to_have_text(
                str(max_batch(spec, parse_bytes("1GB"))), timeout=30_000)
        assert _metric(page, "Activations kept (batch 2)") == f"{mm.activation_bytes / 2**20:.1f} MiB"
        assert _metric(page, "Predicted peak") == f"{mm.peak_bytes / 2**20:.1f} MiB"
        reps = page.locator(".st-key-profile_repeats input")   # not the Measure tab's
        reps.fill("1")
        reps.press("Enter")
        page.get_by_role("button", name="Profile on this machine").click()
        expect(page.get_by_text("Train step")).to_be_visible(timeout=240_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator(".js-plotly-plot").count() >= 4   # batch line, 2 share bars, roofline
        ratios = page.locator('[data-testid="stDataFrame"]').nth(1)
        expect(ratios).to_be_visible()
        r3 = count(preset("resnet3d-26", height=32, width=32, frames=8)).totals.flops
        total_ratio = f"{r3 / count(spec).totals.flops:.2f}"
        expect(ratios).to_contain_text(total_ratio, timeout=10_000)
        _shot(page, "builder-profile")
        # a longer run (another cache key) stops on Cancel
        reps.fill("10")
        reps.press("Enter")
        page.get_by_role("button", name="Profile on this machine").click()
        page.get_by_role("button", name="Cancel").click(timeout=30_000)
        expect(page.get_by_text("Profile cancelled.")).to_be_visible(timeout=120_000)
