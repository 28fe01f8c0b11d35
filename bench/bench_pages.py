"""Run detail and Compare at the scale of a real run: first render and one refresh.

Builds runs of 10 k, 100 k, 400 k and 1 M metric points (loss, lr and clips/s per step,
validation per epoch) in a temporary SQLite store through ``db.add_metrics``, renders the
pages with Streamlit's AppTest and prints times and ratios to the 10 k case: the cold first
render (nothing of the run in memory), a refresh (30 new points, then the page reruns in the
same session) and the first render in a new session (another tab or a reload). Compare shows
two runs of the size. ``python bench/bench_pages.py [--sizes 10000,100000,400000,1000000]``
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MAIN = str(ROOT / "app" / "main.py")
VIEWS = ROOT / "app" / "views"


def _points(rid_steps: range, epoch_len: int = 2000) -> list[dict]:
    out = []
    for s in rid_steps:
        e = 1 + s // epoch_len
        t = 1.7e9 + s * 0.5
        out += [{"event": "step", "split": "train", "epoch": e, "step": s, "name": "loss",
                 "value": 2.0 * math.exp(-s / 50_000) + 0.1 * math.sin(s), "time": t},
                {"event": "step", "split": "train", "epoch": e, "step": s, "name": "lr",
                 "value": 0.1 * (1 + math.cos(math.pi * s / 400_000)) / 2, "time": t},
                {"event": "step", "split": "train", "epoch": e, "step": s, "name": "clips_per_s",
                 "value": 40.0 + math.sin(s / 7), "time": t}]
        if s % epoch_len == epoch_len - 1:
            out.append({"event": "epoch", "split": "val", "epoch": e, "step": s,
                        "name": "video_top1", "value": min(0.9, s / 1e6), "time": t})
    return out


def make_run(n_points: int) -> tuple[int, int]:
    """A running run with about ``n_points`` points; returns (run id, next step)."""
    import db
    from db import Run, utcnow, write
    from tests.helpers.jobs import tiny_spec

    steps = n_points // 3
    rid = write(lambda s: (lambda r: (s.add(r), s.flush(), r.id)[2])(Run(
        name=f"{n_points // 1000}k", spec=tiny_spec(), dataset="/bench", status="running",
        hparams={"epochs": 100}, started_at=utcnow(), total_epochs=100, total_steps=2 * steps,
        step=steps)))
    for lo in range(0, steps, 20_000):
        rows = _points(range(lo, min(steps, lo + 20_000)))
        write(lambda s: db.add_metrics(s, rid, rows))
    return rid, steps


def grow(rid: int, step: int, n: int = 10) -> int:
    """``n`` more steps (3 points each) of a run, as a trainer writes them between refreshes."""
    import db
    from db import write

    rows = _points(range(step, step + n))
    write(lambda s: db.add_metrics(s, rid, rows))
    return step + n


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _open(page: str, runs: list[tuple[int, int]]):
    """A new browser session (AppTest) on the builder, about to switch to ``page``."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=600)
    at.query_params["run"] = str(runs[0][0])
    at.run()
    if page == "compare":
        at.session_state["cmp_runs"] = [r for r, _ in runs]
    return at


def page_times(page: str, runs: list[tuple[int, int]], repeat: int) -> tuple[float, ...]:
    """(cold first render, best refresh, first render in a new session, runs) of ``page``."""
    from app.runs_data import forget_shared

    at = _open(page, runs)
    forget_shared()        # a cold first render: nothing of these runs in memory yet
    first = timed(lambda: at.switch_page(str(VIEWS / f"{page}.py")).run())
    assert not at.exception, at.exception
    best, runs = float("inf"), list(runs)
    for _ in range(repeat):
        runs = [(rid, grow(rid, step)) for rid, step in runs]
        best = min(best, timed(at.run))
        assert not at.exception, at.exception
    again = _open(page, runs)  # another tab, or a reload: starts from what was drawn
    runs = [(rid, grow(rid, step)) for rid, step in runs]
    warm = timed(lambda: again.switch_page(str(VIEWS / f"{page}.py")).run())
    assert not again.exception, again.exception
    return first, best, warm, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,400000,1000000")
    ap.add_argument("--repeat", type=int, default=3, help="refreshes timed (best is shown)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    os.environ.pop("DATABASE_URL", None)
    with tempfile.TemporaryDirectory(prefix="csn-bench-pages-") as d:
        os.environ["CSN_DATA_DIR"] = d
        report(sizes, args.repeat)
        import db
        db.dispose_engines()


def report(sizes: list[int], repeat: int) -> None:
    """Build the runs, time the pages, print the table and the ratios."""
    from jobs import api

    print(f"{'points':>9} {'build s':>8} {'get all s':>9} {'get shown s':>11} {'shown':>6} | "
          f"{'run first':>9} {'refresh':>8} {'new tab':>8} | {'cmp first':>9} {'refresh':>8} "
          f"{'new tab':>8}   (Compare: 2 runs)")
    warm = [make_run(300), make_run(300)]      # imports and first-use caches, not timed
    page_times("run", warm[:1], 1)
    page_times("compare", warm, 1)
    rows = {}
    for n in sizes:
        t0 = time.perf_counter()
        runs = [make_run(n), make_run(n)]
        build = time.perf_counter() - t0
        rid = runs[0][0]
        t_all = timed(lambda: api.get_metrics(rid))
        shown = api.get_metrics(rid, max_points=1500)
        t_shown = timed(lambda: api.get_metrics(rid, max_points=1500))
        *r, runs[:1] = page_times("run", runs[:1], repeat)
        *c, runs = page_times("compare", runs, repeat)
        rows[n] = r + c
        print(f"{n:>9,} {build:>8.1f} {t_all:>9.2f} {t_shown:>11.3f} {len(shown):>6} | "
              + " ".join(f"{x:>8.3f}" for x in r) + " | " + " ".join(f"{x:>8.3f}" for x in c),
              flush=True)
    base = rows[sizes[0]]
    print(f"\nratio to {sizes[0]:,} points (cold first render, refresh, new tab):")
    for n, r in rows.items():
        q = [x / b for x, b in zip(r, base)]
        print(f"{n:>9,}  Run detail {q[0]:5.2f} {q[1]:5.2f} {q[2]:5.2f}   "
              f"Compare {q[3]:5.2f} {q[4]:5.2f} {q[5]:5.2f}")


if __name__ == "__main__":
    main()
