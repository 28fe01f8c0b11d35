"""Demo latency: upload -> top-5 and each explanation method, on the shipped model (one run).

    python bench/bench_demo.py [--checkpoint backend/assets/motion_csn.pt] [--threads 2] [--repeat 3]

Writes a generated motion clip (H.264 mp4, 64x64, 32 frames), then times what the demo does
per request: ``Predictor.predict`` with 1, 3 and 10 clips (decode + model; the model is loaded
once, as in the demo), and ``backend.saliency.explain`` with every method on one clip. Prints
best-of-N seconds and each time as a multiple of one forward pass measured in the same run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from backend.encode import write_video  # noqa: E402
from backend.inference import Predictor  # noqa: E402
from backend.saliency import METHODS, explain  # noqa: E402
from backend.synth import make_scene, render  # noqa: E402

from _timing import best  # noqa: E402  (bench/ is the script's folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "backend" / "assets" / "motion_csn.pt"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    if not Path(a.checkpoint).is_file():
        print(f"no checkpoint at {a.checkpoint}: train one (make motion-model) or pass --checkpoint")
        return 0
    torch.set_num_threads(a.threads)
    pr = Predictor(a.checkpoint)
    with tempfile.TemporaryDirectory() as d:
        clip = write_video(Path(d) / "clip.mp4", render(make_scene("rotate-cw", (77,), size=64, frames=32)), 15)
        x = pr.clips(clip, 1, 1)
        def timed(fn) -> float:
            return best(fn, a.repeat, warmup=True)

        fwd = timed(lambda: pr.probs(x))
        rows = [("forward pass, 1 clip (baseline)", fwd)]
        for n in (1, 3, 10):
            rows.append((f"upload -> top-5, {n} clip(s)", timed(lambda: pr.predict(clip, num_clips=n))))
        for m in METHODS:
            rows.append((f"explain: {m}", timed(lambda: explain(pr.model, x[0], m, stage="conv4", n_steps=16,
                                                                  internal_batch_size=4))))
    print(f"{pr.meta['name']} ({pr.frames}x{pr.size}x{pr.size}, rate {pr.rate}), {a.threads} threads, "
          f"best of {a.repeat}")
    print(f"{'what':<40} {'seconds':>9} {'x forward':>10}")
    for name, s in rows:
        print(f"{name:<40} {s:>9.4f} {s / fwd:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
