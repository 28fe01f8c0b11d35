"""Study throughput and the wall-time prediction, on this machine:

1. clips/s of a train step at the study's clip (8x32x32, conv2 width 16) for each Table 2
   model at batch 8, 16 and 32 (random clips, one thread; per-step overhead vs batch);
2. predicted vs actual wall time of a small study (``table2`` at width 16, the quick recipe cut
   to ``--epochs`` epochs, on a small generated dataset), as a ratio.

    python bench/bench_study.py [--epochs 2] [--per-class 8] [--batches 8,16,32]

On a machine shared with other work both move a lot; the ratio is what to read.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backend.study import RECIPES, plan, run_study  # noqa: E402
from backend.training.progress import calibrate, fmt_s, predict  # noqa: E402


def clips_per_s(batches: list[int]) -> None:
    study = plan("table2-quick")
    specs = {r.label: r.spec for r in study.runs}
    for b in batches:
        t = calibrate(specs, batch=b, eval_clips=2, threads=1)
        print(f"batch {b:>2}: " + ", ".join(f"{k} {b / v['train_step_s']:.1f} clips/s"
                                            for k, v in t.items()))


def predicted_vs_actual(epochs: int, per_class: int) -> None:
    from backend.synth import generate
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(data, per_class=per_class, seed=0, size=32, difficulty="easy",
                 splits={"train": 0.7, "val": 0.3})
        study = plan("table2", depth=26, width=16, name="bench",
                     recipe={**RECIPES["quick"], "epochs": epochs, "eval_every": 1})
        from backend.data.datasets import load_splits
        sp = load_splits(data)
        p = predict(study, len(sp.train), len(sp.val))
        t0 = time.time()
        doc = run_study(study, str(data), Path(tmp) / "study", log=lambda _: None, tty=False)
        wall = time.time() - t0
    ok = all(r["status"] == "succeeded" for r in doc["results"])
    print(f"small study ({len(study.runs)} runs x {epochs} epochs, {len(sp.train)}/{len(sp.val)} "
          f"videos, {p['jobs']} at a time): predicted {fmt_s(p['wall_s'])}, actual {fmt_s(wall)}"
          f" (actual / predicted {wall / p['wall_s']:.2f}){'' if ok else ' -- a run failed'}; "
          f"load {os.getloadavg()[0]:.1f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--per-class", type=int, default=8)
    p.add_argument("--batches", default="8,16,32")
    a = p.parse_args()
    clips_per_s([int(b) for b in a.batches.split(",")])
    predicted_vs_actual(a.epochs, a.per_class)
    return 0


if __name__ == "__main__":
    sys.exit(main())
