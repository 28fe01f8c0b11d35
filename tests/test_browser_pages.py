"""Every page as a new user sees it, in one app and one browser: nothing cut off at 1280, 1400
and 1920 px (``scrollWidth > clientWidth`` on the rendered labels and values), chart labels and
legends apart, log ticks with whole values, the README's dataset command accepted as written on
the Train page, the Demo iframe's height stable over 60 s; screenshots of every page at 1400 px
in test-artifacts/page-*.png."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from tests.helpers.runs import seed_run, step_points, val_point
from tests.test_browser import ARTIFACTS, ROOT, _app_page
from tests.test_browser_runs import _seed, _store

pytestmark = [pytest.mark.slow, pytest.mark.browser]
WIDTHS = (1280, 1400, 1920)

# every rendered label, metric, tab and button whose text has no room shows an ellipsis
CUT_JS = """() => [...document.querySelectorAll(
    '[data-testid="stWidgetLabel"], [data-testid="stMetricLabel"], [data-testid="stMetricValue"],'
    + ' [data-testid="stTab"], [data-testid="stBaseButton-secondary"], [data-testid="stCaptionContainer"]')]
  .filter(e => e.offsetParent !== null)
  .filter(e => [e, ...e.querySelectorAll('*')].some(x => x.clientWidth > 0 && x.scrollWidth > x.clientWidth + 1))
  .map(e => e.innerText.trim().slice(0, 60))"""

# per plotly chart: point labels that overlap, a legend over an axis or chart title, and log
# axes with fewer than two tick labels or labels that do not increase (plotly's "2, 5, 10, 2, 5"
# minor-digit labels)
PLOT_JS = """() => {
  const hit = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const out = [];
  for (const p of document.querySelectorAll('.js-plotly-plot')) {
    if (p.offsetParent === null) continue;
    const title = (p.querySelector('.gtitle') || {}).textContent || p.querySelector('.xtitle')?.textContent || '?';
    const labels = [...p.querySelectorAll('.textpoint text')].map(t => [t.textContent, t.getBoundingClientRect()]);
    for (let i = 0; i < labels.length; i++) for (let j = i + 1; j < labels.length; j++)
      if (hit(labels[i][1], labels[j][1])) out.push(`${title}: labels ${labels[i][0]} / ${labels[j][0]} overlap`);
    const legend = p.querySelector('.legend');
    for (const sel of ['.xtitle', '.ytitle', '.gtitle'])
      for (const t of p.querySelectorAll(sel))
        if (legend && hit(legend.getBoundingClientRect(), t.getBoundingClientRect()))
          out.push(`${title}: legend over ${sel}`);
    const lay = p._fullLayout || {};
    for (const ax of ['xaxis', 'yaxis']) {
      if (!lay[ax] || lay[ax].type !== 'log') continue;
      const sel = ax === 'xaxis' ? '.xtick text' : '.ytick text';
      const ticks = [...p.querySelectorAll(sel)].map(t => parseFloat(t.textContent.replace('\u2212', '-')));
      if (ticks.length < 2) out.push(`${title}: ${ax} shows ${ticks.length} tick label(s)`);
      for (let i = 1; i < ticks.length; i++)
        if (!(ticks[i] > ticks[i - 1])) { out.push(`${title}: ${ax} ticks ${ticks.join(',')}`); break; }
    }
  }
  return out;
}"""


def _finished(data, name: str, arch: str, acc: float, prior_s: float = 0.0) -> int:
    from backend.csn import preset
    from db import utcnow

    now, t0 = utcnow(), time.time() - 900
    pts = [val_point(e, 10 * e, acc * e / 2, time=t0 + 400 * e) for e in (1, 2)]
    pts += step_points(range(1, 21), {"loss": lambda s: 2.0 / s}, epoch=lambda s: 1 + s // 10,
                       t0=t0, every_s=40)
    return seed_run(pts, name=name, spec=preset(arch).to_dict(), dataset="/data/clips",
                    status="succeeded", hparams={"epochs": 2, "frames": 8, "size": 64},
                    total_steps=20, total_epochs=2, step=20, epoch=2, best_val_video_top1=acc,
                    started_at=now - timedelta(minutes=16), finished_at=now,
                    attempts=2 if prior_s else 1, prior_s=prior_s or None)


def _beating(rid: int) -> None:
    """Make run ``rid`` a live one: a fresh heartbeat from a worker on another host."""
    from db import Run, utcnow, write

    def beat(s):
        r = s.get(Run, rid)
        r.heartbeat_at, r.worker_id = utcnow(), "elsewhere:1"
    write(beat)


def _readme_dataset() -> tuple[list[str], str]:
    """The README's own `backend.synth --out data/motion` command (fewer videos, so the test is
    quick) and the --out it writes, as typed on the Train page."""
    line = re.search(r"python -m backend\.synth --out data/motion[^\n`#]*",
                     (ROOT / "README.md").read_text()).group(0).split()
    out = line[line.index("--out") + 1]
    line[line.index("--per-class") + 1] = "7"
    return [sys.executable, *line[1:]], out


def _no_cuts(page, where: str) -> None:
    page.wait_for_timeout(900)
    cut = page.evaluate(CUT_JS)
    assert not cut, f"{where} at {page.viewport_size['width']} px: cut off {cut}"


def _at_widths(page, where: str, plots: bool = False) -> None:
    for w in WIDTHS:
        page.set_viewport_size({"width": w, "height": 1200})
        _no_cuts(page, where)
        if plots:
            bad = page.evaluate(PLOT_JS)
            assert not bad, f"{where} at {w} px: {bad}"
    page.set_viewport_size({"width": 1400, "height": 1200})


def _shot(page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the viewport grows to it."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(800)
    tall = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(max(1200, tall), 4000)})
    page.wait_for_timeout(800)
    page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1200})


def test_every_page_fits_and_reads_right(tmp_path, monkeypatch):
    from playwright.sync_api import expect

    import db

    data, env = _store(tmp_path, monkeypatch)
    live = _seed(data, "ir-lr0.01", "ir-csn-26", 0.01)
    _beating(live)
    env["CSN_STALE_S"] = "3600"        # its worker (elsewhere) stays alive while the test runs
    for name, arch, acc in (("ir-csn", "ir-csn-26", 0.62), ("ip-csn", "ip-csn-26", 0.6),
                            ("resnet3d", "resnet3d-26", 0.55)):
        _finished(data, name, arch, acc, prior_s=600.0 if name == "ir-csn" else 0.0)
    cmd, typed = _readme_dataset()
    made = not (ROOT / typed).exists()
    if made:
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    try:
        with _app_page(env, 1400, 1200) as (url, page):
            page.goto(url, wait_until="domcontentloaded")
            expect(page.locator('[data-testid="stMetric"]').first).to_be_visible(timeout=60_000)
            _shot(page, "builder")
            _at_widths(page, "Builder")
            page.get_by_role("tab", name="Among the paper's models").click()
            expect(page.locator('.js-plotly-plot >> visible=true').first).to_be_visible(timeout=30_000)
            _at_widths(page, "Builder paper scatter", plots=True)
            _shot(page, "builder-paper")

            page.goto(f"{url}/train", wait_until="domcontentloaded")
            page.get_by_text("A folder or CSV on the server").click()
            path = page.locator('[data-testid="stTextInput"]', has_text="Path").locator("input")
            path.fill(typed)
            path.press("Enter")
            found = page.get_by_text(re.compile(r"Found \d+ videos in 8 classes: \d+ train, [1-9]\d* validation"))
            expect(found).to_be_visible(timeout=60_000)
            expect(page.locator('[data-testid="stImage"]')).to_have_count(8, timeout=30_000)
            _shot(page, "train")
            _at_widths(page, "Train")

            page.goto(f"{url}/runs", wait_until="domcontentloaded")
            expect(page.get_by_text("4 of 4 runs")).to_be_visible(timeout=60_000)
            expect(page.locator('[data-testid="stDataFrame"] canvas').first).to_be_visible(
                timeout=30_000)
            _shot(page, "runs")
            _at_widths(page, "Runs")

            page.goto(f"{url}/run?run={live}", wait_until="domcontentloaded")
            expect(page.locator('[data-testid="stMetric"]', has_text="ETA")).to_contain_text(
                "min", timeout=60_000)                       # a running run: a real ETA
            expect(page.locator('.js-plotly-plot >> visible=true').first).to_be_visible(timeout=30_000)
            _shot(page, "run")
            _at_widths(page, "Run detail", plots=True)

            page.goto(f"{url}/compare", wait_until="domcontentloaded")
            expect(page.get_by_text("Accuracy vs cost")).to_be_visible(timeout=60_000)
            expect(page.locator('.js-plotly-plot')).to_have_count(4, timeout=30_000)
            _shot(page, "compare")
            _at_widths(page, "Compare", plots=True)

            page.goto(f"{url}/study", wait_until="domcontentloaded")
            expect(page.locator("h1").first).to_be_visible(timeout=60_000)
            _shot(page, "study")
            _at_widths(page, "Study")

            page.goto(f"{url}/demo", wait_until="domcontentloaded")
            outer = page.locator('iframe[title="st.iframe"]').first
            demo = page.frame_locator('iframe[title="st.iframe"]').first.frame_locator("iframe#demo")
            expect(demo.get_by_role("button", name="Analyze")).to_be_visible(timeout=180_000)
            page.wait_for_timeout(4000)                    # the first height has arrived
            heights = []
            for _ in range(13):                           # 60 s, one page load
                heights.append(outer.bounding_box()["height"])
                page.wait_for_timeout(5000)
            assert max(heights) - min(heights) <= 2, heights
            assert 1000 < heights[-1] < 2600, heights
            _shot(page, "demo")
            assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        if made:
            shutil.rmtree(ROOT / typed, ignore_errors=True)
        db.dispose_engines()
    for name in ("builder", "builder-paper", "train", "runs", "run", "compare", "study", "demo"):
        assert (ARTIFACTS / f"page-{name}.png").stat().st_size > 10_000, name
