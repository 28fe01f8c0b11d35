"""``python -m backend.convert SRC --out OUT.pt [--model NAME] [--pool1 yes|no] ...``"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from .core import convert_checkpoint
from .formats import LAYOUTS, MODELS
from .records import ConvertError


def _csv(kind: Callable, n: int, name: str, single_ok: bool = False) -> Callable[[str], Any]:
    """An argparse type for ``n`` comma-separated values (or one, with ``single_ok``)."""
    def parse_list(text: str):
        try:
            vals = tuple(kind(v.strip()) for v in text.split(","))
        except ValueError:
            vals = ()
        if single_ok and len(vals) == 1:
            return vals[0]
        if len(vals) != n:
            raise argparse.ArgumentTypeError(f"--{name}: expected {'one or ' if single_ok else ''}{n} "
                                             f"comma-separated values, got {text!r}")
        return vals
    return parse_list

def _yes(v: str) -> bool:
    if v.lower() not in ("yes", "no"):
        raise ValueError(v)
    return v.lower() == "yes"

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend.convert", description=__doc__.split("\n")[0],
                                 epilog="Flags override what the file says; see README 'Importing "
                                        "pretrained checkpoints'.")
    ap.add_argument("src")
    ap.add_argument("--out", required=True)
    ap.add_argument("--layout", default="auto", choices=("auto",) + LAYOUTS)
    ap.add_argument("--model", choices=tuple(MODELS), help="a published model (default: from the file name)")
    ap.add_argument("--labels", help="text file, one class name per line (default: Kinetics-400 for 400 classes)")
    ap.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                    help="drop source keys matching REGEX, mapped or not; they are listed in the summary "
                         "(otherwise an unmapped key, or two keys for one tensor, is an error)")
    yn = ("yes", "no")
    ap.add_argument("--pool1", choices=yn)
    ap.add_argument("--pool2", choices=yn)
    ap.add_argument("--ip-relu", choices=yn)
    ap.add_argument("--temporal-stride", type=_csv(_yes, 3, "temporal-stride", True), metavar="yes|no|F,F,F",
                    help="temporal stride at conv3_1..conv5_1: one yes/no, or three (e.g. yes,yes,no)")
    ap.add_argument("--head-pool", type=_csv(int, 3, "head-pool"), metavar="T,H,W",
                    help="average-pool window (stride 1) before the classifier, logits averaged")
    ap.add_argument("--bn-eps", type=float)
    ap.add_argument("--stem-stride-t", type=int)
    ap.add_argument("--mean", type=_csv(float, 3, "mean"), metavar="R,G,B", help="0-1 scale")
    ap.add_argument("--std", type=_csv(float, 3, "std"), metavar="R,G,B", help="0-1 scale")
    ap.add_argument("--input-order", choices=("RGB", "BGR"))
    ap.add_argument("--frames", type=int)
    ap.add_argument("--size", type=int)
    ap.add_argument("--rate", type=int)
    a = ap.parse_args(argv)
    b = lambda v: None if v is None else v == "yes"  # noqa: E731
    try:
        classes = Path(a.labels).read_text().splitlines() if a.labels else None
        rep = convert_checkpoint(a.src, a.out, a.layout, classes=classes, model=a.model, ignore=tuple(a.ignore),
                                 pool1=b(a.pool1), pool2=b(a.pool2), ip_relu=b(a.ip_relu),
                                 temporal_stride=a.temporal_stride, head_pool=a.head_pool, bn_eps=a.bn_eps,
                                 stem_stride_t=a.stem_stride_t, input_mean=a.mean, input_std=a.std,
                                 input_order=a.input_order, frames=a.frames, size=a.size, rate=a.rate)
    except (ConvertError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(rep.summary())
    print(f"wrote {a.out}")
    return 0
