"""Run detail and Compare at the scale of a real run: first render and one refresh.

Builds runs of 10 k, 100 k, 400 k and 1 M metric points (loss, lr and clips/s per step,
validation per epoch) in a temporary SQLite store through ``db.add_metrics``, renders the
pages with Streamlit's AppTest (a refresh adds 30 new points, then reruns the page in the
same session) and prints times and ratios to the 10 k case. Compare shows two runs of the
size. ``python bench/bench_pages.py [--sizes 10000,100000,400000,1000000]``
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
    from tests.jobs_helpers import tiny_spec

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


def page_times(page: str, runs: list[tuple[int, int]], repeat: int) -> tuple[float, float, list]:
    """(first render, best refresh) seconds of ``page`` showing ``runs``."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=600)
    at.query_params["run"] = str(runs[0][0])
    at.run()
    if page == "compare":
        at.session_state["cmp_runs"] = [r for r, _ in runs]
    first = timed(lambda: at.switch_page(str(VIEWS / f"{page}.py")).run())
    assert not at.exception, at.exception
    best, runs = float("inf"), list(runs)
    for _ in range(repeat):
        runs = [(rid, grow(rid, step)) for rid, step in runs]
        best = min(best, timed(at.run))
        assert not at.exception, at.exception
    return first, best, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,400000,1000000")
    ap.add_argument("--repeat", type=int, default=3, help="refreshes timed (best is shown)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    os.environ["CSN_DATA_DIR"] = tempfile.mkdtemp(prefix="csn-bench-pages-")
    os.environ.pop("DATABASE_URL", None)
    from jobs import api

    print(f"{'points':>9} {'build s':>8} {'get all s':>9} {'get shown s':>11} {'shown':>6} | "
          f"{'run first':>9} {'refresh':>8} | {'cmp first':>9} {'refresh':>8}   (x2 runs)")
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
        run_first, run_ref, runs[:1] = page_times("run", runs[:1], args.repeat)
        cmp_first, cmp_ref, runs = page_times("compare", runs, args.repeat)
        rows[n] = (run_first, run_ref, cmp_first, cmp_ref)
        print(f"{n:>9,} {build:>8.1f} {t_all:>9.2f} {t_shown:>11.3f} {len(shown):>6} | "
              f"{run_first:>9.3f} {run_ref:>8.3f} | {cmp_first:>9.3f} {cmp_ref:>8.3f}", flush=True)
    base = rows[sizes[0]]
    print(f"\nratio to {sizes[0]:,} points (first render, refresh):")
    for n, r in rows.items():
        print(f"{n:>9,}  Run detail {r[0] / base[0]:5.2f} {r[1] / base[1]:5.2f}   "
              f"Compare {r[2] / base[2]:5.2f} {r[3] / base[3]:5.2f}")


if __name__ == "__main__":
    main()
