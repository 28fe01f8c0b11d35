"""Probe the early epochs of one quick-study run: training clip@1 and loss per epoch for the
first N epochs of the full schedule (the run is stopped there), to see how long a recipe
sits at chance. Small on purpose (about 1-2 CPU-minutes at N=16).

    python bench/probe_plateau.py --data DIR --model ip-CSN-26 --stop 16 [--seed 0]
        [--set lr=3e-3 --set batch_size=16 --set input_centre=none] [--zero-init-residual]
        [--twin-batches]
    python bench/probe_plateau.py --data DIR --linear-probe   # untrained nets, per stage
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import backend.train as train_mod
from backend.study import RECIPES, _setting, plan, train_hparams


class _Stop(Exception):
    pass


def zero_init_residual(model: torch.nn.Module) -> torch.nn.Module:
    """The last BatchNorm of every residual branch starts at gamma 0 (each block starts as
    its shortcut; Goyal et al. 2017)."""
    from backend.csn.model import ResBlock
    for m in model.modules():
        if isinstance(m, ResBlock):
            torch.nn.init.zeros_(getattr(m, m.roles[-1]).bn.weight)
    return model


def twin_sampler(base_cls):
    """A SeededSampler whose batches hold the twins of one appearance (the i-th video of
    every class, ``<class>_<i>.mp4``), the groups in a seeded random order per epoch."""
    import random
    import re

    class TwinSampler(base_cls):
        def __init__(self, dataset, **kw):
            super().__init__(dataset, **kw)
            groups: dict[str, list[int]] = {}
            for i, item in enumerate(dataset.items):
                m = re.search(r"_(\d+)\.\w+$", str(item.path))
                groups.setdefault(m.group(1) if m else str(i), []).append(i)
            self.groups = list(groups.values())

        def __iter__(self):
            rng = random.Random(hash((self.seed, self.epoch)))
            order = self.groups[:]
            rng.shuffle(order)
            for g in order:
                for i in rng.sample(g, len(g)):
                    yield i, hash((self.seed, self.epoch, i)) & 0x7FFFFFFF
    return TwinSampler


def _ridge_accuracy(ftr, ytr, fva, yva, classes: int) -> float:
    """Held-out accuracy of a one-vs-all ridge classifier (best of a few penalties)."""
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    a, b = (ftr - mu) / sd, (fva - mu) / sd
    target = torch.nn.functional.one_hot(ytr, classes).float()
    best = 0.0
    for lam in (0.1, 1.0, 10.0, 100.0):
        w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1]), a.T @ target)
        best = max(best, ((b @ w).argmax(1) == yva).float().mean().item())
    return best


def linear_probe(data: str, seed: int, recipe: dict) -> None:
    """How much motion the globally pooled features of each untrained Table 2 net carry."""
    from backend.csn import ArchSpec, build_model
    from backend.data.datasets import ClipDataset, load_splits
    torch.manual_seed(seed)
    splits = load_splits(data)

    def clips(items):
        ds = ClipDataset(items, frames=8, rate=2, size=32, scale=(37, 37), train=True)
        xs, ys = zip(*[ds[i][:2] for i in range(len(items))])
        return torch.stack(xs), torch.tensor(ys)
    (xtr, ytr), (xva, yva) = clips(splits.train), clips(splits.val)
    for run in plan("table2-quick", recipe=recipe, num_classes=len(splits.classes)).runs:
        model, feats = build_model(ArchSpec.from_dict(run.spec)).train(), {}
        for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
            getattr(model, name).register_forward_hook(
                lambda mod, i, o, name=name: feats.__setitem__(name, o.mean((2, 3, 4))))
        with torch.no_grad():
            model(xtr)
            ftr = dict(feats)
            model(xva)
        acc = {k: _ridge_accuracy(ftr[k], ytr, feats[k], yva, len(splits.classes)) for k in ftr}
        print(f"{run.label} untrained, ridge on pooled features, held-out accuracy: "
              + ", ".join(f"{k} {100 * v:.1f}%" for k, v in acc.items()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="ip-CSN-26")
    p.add_argument("--stop", type=int, default=16, help="epochs to run of the schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--zero-init-residual", action="store_true")
    p.add_argument("--out", default="/tmp/probe")
    p.add_argument("--linear-probe", action="store_true")
    p.add_argument("--twin-batches", action="store_true",
                   help="each batch: one appearance's twins (use batch_size=8 for 8 classes)")
    a = p.parse_args()
    recipe = {**RECIPES["quick"], "eval_every": 10_000, **dict(_setting(s) for s in a.set)}
    if a.linear_probe:
        linear_probe(a.data, a.seed, recipe)
        return 0
    study = plan("table2-quick", seeds=[a.seed], recipe=recipe)
    run = next(r for r in study.runs if r.label == a.model)
    if a.zero_init_residual:
        build = train_mod.build_model
        train_mod.build_model = lambda spec: zero_init_residual(build(spec))
    if a.twin_batches:
        train_mod.SeededSampler = twin_sampler(train_mod.SeededSampler)
    accs: list[str] = []

    def on_event(e: dict) -> None:
        if e["event"] == "epoch" and e["split"] == "train":
            accs.append(f"{100 * e['metrics']['clip_top1']:.0f}")
            if e["epoch"] >= a.stop:
                raise _Stop
    cfg = train_mod.TrainConfig(arch=json.dumps(run.spec), data=a.data,
                                out=f"{a.out}/{time.time()}",
                                threads=1, progress=False, tensorboard=False, keep_last=1,
                                **train_hparams(study, run))
    t0 = time.process_time()
    try:
        train_mod.train(cfg, callback=on_event)
    except _Stop:
        pass
    print(f"{a.model} seed {a.seed} {' '.join(a.set)}{' zero-init' if a.zero_init_residual else ''}"
          f"{' twin-batches' if a.twin_batches else ''}"
          f": train clip@1 per epoch {' '.join(accs)} ({time.process_time() - t0:.0f} CPU-s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
