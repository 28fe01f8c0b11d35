"""Demo latency: upload -> top-5 and each explanation, on the shipped model and a big one.

    python bench/bench_demo.py [--checkpoint backend/assets/motion_csn.pt] [--threads 2]
                               [--repeat 3] [--no-big]

Writes a generated motion clip (H.264 mp4), then times what the demo does per request:
``Predictor.predict`` (decode + model; the model is loaded once, as in the demo) and
``backend.inference.saliency.explain`` with the demo's settings for the model (``app.demo.
explain_settings``). Prints best-of-N seconds and each time as a multiple of one forward pass
measured in the same run.

The big model is an ir-CSN-152 at 32x224x224 with random weights (what ``backend.convert``
makes of VMZ's ir-csn-152 has this spec); it is timed once (repeat 1) with 1 clip, Grad-CAM
and saliency. Integrated Gradients (8 steps in batches of 1) and frame ablation (1 + 32
forward passes) are given as estimates from the measured passes, marked "est.".
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from app.demo import explain_settings  # noqa: E402
from backend.training.checkpoint import FORMAT, save_atomic  # noqa: E402
from backend.csn import build_model, preset  # noqa: E402
from backend.data.encode import write_video  # noqa: E402
from backend.inference.predictor import Predictor  # noqa: E402
from backend.inference.saliency import METHODS, explain  # noqa: E402
from backend.synth import make_scene, render  # noqa: E402

from _timing import best  # noqa: E402  (bench/ is the script's folder)


def big_checkpoint(path: Path) -> Path:
    """ir-CSN-152, 32x224x224, 400 classes, random weights, as a csn-explorer/1 checkpoint."""
    spec = preset("ir-csn-152", frames=32, height=224, width=224, num_classes=400)
    torch.manual_seed(0)
    save_atomic({"format": FORMAT, "model": build_model(spec).state_dict(), "spec": spec.to_dict(),
                 "classes": [f"class_{i}" for i in range(400)],
                 "config": {"frames": 32, "rate": 2, "size": 224}}, path)
    return path


def measure(pr: Predictor, clip: Path, repeat: int, methods, clips=(1, 3, 10)) -> list[tuple[str, float]]:
    x = pr.clips(clip, 1, 1)
    kw = explain_settings(pr)

    def timed(fn) -> float:
        return best(fn, repeat, warmup=repeat > 1)

    fwd = timed(lambda: pr.probs(x))
    rows = [("forward pass, 1 clip (baseline)", fwd)]
    for n in clips:
        rows.append((f"upload -> top-5, {n} clip(s)", timed(lambda: pr.predict(clip, num_clips=n))))
    for m in methods:
        rows.append((f"explain: {m}", timed(lambda: explain(pr.model, x[0], m, stage="conv4", **kw))))
    return rows


def report(pr: Predictor, rows: list[tuple[str, float]], repeat: int, load_s: float) -> None:
    fwd = rows[0][1]
    print(f"\n{pr.meta['name']} ({pr.frames}x{pr.size}x{pr.size}, rate {pr.rate}; "
          f"{pr.totals.flops / 1e9:.2f} G multiply-adds per clip; big={pr.big}), best of {repeat}, "
          f"load {load_s:.1f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
    print(f"{'what':<44} {'seconds':>9} {'x forward':>10}")
    for name, s in rows:
        print(f"{name:<44} {s:>9.3f} {s / fwd:>10.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "backend" / "assets" / "motion_csn.pt"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-big", action="store_true", help="skip the ir-CSN-152 32x224x224 model")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"{a.threads} threads")
    with tempfile.TemporaryDirectory() as d:
        clip = write_video(Path(d) / "clip.mp4", render(make_scene("rotate-cw", (77,), size=128, frames=72)), 15)
        if Path(a.checkpoint).is_file():
            t0 = time.perf_counter()
            pr = Predictor(a.checkpoint)
            report(pr, measure(pr, clip, a.repeat, METHODS), a.repeat, time.perf_counter() - t0)
        else:
            print(f"no checkpoint at {a.checkpoint}: train one (make motion-model) or pass --checkpoint")
        if a.no_big:
            return 0
        t0 = time.perf_counter()
        pr = Predictor(big_checkpoint(Path(d) / "ir-csn-152.pt"))
        load_s = time.perf_counter() - t0
        rows = measure(pr, clip, 1, ("gradcam", "saliency"), clips=(1,))
        s = explain_settings(pr)
        gradcam = dict(rows)["explain: gradcam"]   # one forward + one backward pass
        rows += [(f"explain: integrated_gradients (est., {s['n_steps']} steps)", gradcam * s["n_steps"]),
                 (f"explain: frame_ablation (est., {pr.frames + 1} passes)", rows[0][1] * (pr.frames + 1))]
        report(pr, rows, 1, load_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
