"""A study's progress while it trains, and its wall time before it does.

:class:`Monitor` follows each run's ``metrics.jsonl`` (the trainer's own event log, so it works
for runs in worker processes) and reports one line per run at each validation: epoch, loss,
train clip@1, held-out video@1 so far, the run's ETA and the study's. On a terminal the lines
go above a tqdm bar for the whole study; otherwise they are plain log lines.

:func:`predict` times a few real train steps and forward passes of each planned model on this
machine (:func:`calibrate`) and turns them, with the dataset's size and the recipe, into each
run's CPU time and the study's wall time for ``jobs`` runs at once on ``cpus`` cores
(:func:`makespan`: the cores shared equally among the runs in flight).
"""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable


def fmt_s(seconds: float | None) -> str:
    """``1 h 02 min``, ``4 min 05 s``, ``12 s``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0)))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


#: speed gained per extra thread of one run (measured on the quick study's models at batch
#: 32: 2 threads train 1.60-1.73x as fast as 1; ``bench/bench_study.py``)
THREAD_GAIN = 0.65


def speed(threads: int, base: int = 1) -> float:
    """A run's speed on ``threads`` threads relative to ``base`` threads."""
    return (1 + THREAD_GAIN * (threads - 1)) / (1 + THREAD_GAIN * (base - 1))


def makespan(works: list[float], jobs: int, cpus: int, threads: int = 1,
             started: list[float] | None = None) -> float:
    """Wall seconds to finish ``works`` (each in seconds of one run alone on ``threads``
    threads), ``jobs`` at a time in list order, with ``cpus`` cores shared equally by the runs
    in flight; when fewer runs than cores are left of a parallel study, each takes ``cpus //
    runs`` threads (the study's tail: :class:`backend.study.ShareCores`). ``started``: remaining work of runs
    already in flight, which keep their slots."""
    pending = list(works)
    active = list(started or [])
    while len(active) < jobs and pending:
        active.append(pending.pop(0))
    wall = 0.0
    while active:
        if threads * len(active) >= cpus or jobs == 1:
            rate = min(1.0, cpus / (threads * len(active)))   # time-shared cores
        else:                                                 # the tail takes the free cores
            rate = speed(max(threads, cpus // len(active)), threads)
        step = min(active) / rate
        wall += step
        active = [w - step * rate for w in active]
        active = [w for w in active if w > 1e-9]
        while len(active) < jobs and pending:
            active.append(pending.pop(0))
    return wall


class RunState:
    """What one run's events said so far."""

    def __init__(self, key: str) -> None:
        self.key, self.offset = key, 0
        self.start_time: float | None = None
        self.start_epoch = 0
        self.epoch, self.total_epochs = 0, 0
        self.loss = self.train_acc = self.val_acc = None
        self.last_time: float | None = None
        self.done = False

    def feed(self, e: dict[str, Any]) -> bool:
        """Take one event; True when it is worth a line (a validation, or the end)."""
        if e["event"] == "start":
            self.start_time, self.start_epoch = e["time"], e["epoch"]
            self.epoch, self.total_epochs = e["epoch"], e["total_epochs"]
        elif e["event"] == "epoch" and e["split"] == "train":
            m = e["metrics"]
            self.epoch, self.total_epochs = e["epoch"], e["total_epochs"]
            self.loss, self.train_acc, self.last_time = m.get("loss"), m.get("clip_top1"), e["time"]
        elif e["event"] == "epoch":
            self.val_acc = e["metrics"].get("video_top1")
            return True
        elif e["event"] == "end":
            self.done = True
        return False

    def s_per_epoch(self) -> float | None:
        n = self.epoch - self.start_epoch
        if self.start_time is None or self.last_time is None or n <= 0:
            return None
        return (self.last_time - self.start_time) / n

    def eta(self) -> float | None:
        spe = self.s_per_epoch()
        return None if spe is None else spe * (self.total_epochs - self.epoch)


class Monitor:
    """Follows ``out/runs/KEY/metrics.jsonl`` of the ``keys`` being trained (a thread polling
    every ``interval`` s); :meth:`finished` marks a run done (its record written)."""

    def __init__(self, keys: list[str], labels: dict[str, str], out: Path, jobs: int, cpus: int,
                 log: Callable[[str], None] = print, interval: float = 2.0,
                 tty: bool | None = None) -> None:
        self.out, self.jobs, self.cpus, self.log, self.interval = out, jobs, cpus, log, interval
        self.labels, self.order = labels, list(keys)
        self.runs = {k: RunState(k) for k in keys}
        for k, r in self.runs.items():       # a resumed run's old events are not news
            p = self._path(k)
            r.offset = p.stat().st_size if p.is_file() else 0
        self.recorded: set[str] = set()
        self.t0 = time.time()
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.bar = None
        self._stop, self._lock = threading.Event(), threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _path(self, key: str) -> Path:
        return self.out / "runs" / key / "metrics.jsonl"

    def __enter__(self) -> "Monitor":
        if self.tty:
            from tqdm import tqdm
            self.bar = tqdm(total=len(self.order), desc="study", unit="run", leave=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll()
        if self.bar is not None:
            self.bar.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """Read new events of every run; one line per validation."""
        with self._lock:
            for r in self.runs.values():
                for e in self._new_events(r):
                    if r.feed(e):
                        self.emit(self.line(r))

    def _new_events(self, r: RunState) -> list[dict[str, Any]]:
        p = self._path(r.key)
        if not p.is_file() or p.stat().st_size <= r.offset:
            return []
        with p.open("rb") as f:
            f.seek(r.offset)
            chunk = f.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]        # a line being written waits
        r.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def finished(self, key: str) -> None:
        self.recorded.add(key)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"ETA {fmt_s(self.study_eta())}")

    def study_eta(self) -> float | None:
        """Remaining wall time: runs in flight at their measured pace, pending runs at the
        mean measured wall time per epoch (same model first), shared by ``jobs`` slots."""
        paces = {k: r.s_per_epoch() for k, r in self.runs.items() if r.s_per_epoch()}
        if not paces:
            return None
        left = [k for k in self.order if k not in self.recorded]
        flying = [k for k in left if self.runs[k].start_time is not None]
        waiting = [k for k in left if k not in flying]
        eta_flying = [self.runs[k].eta() or 0.0 for k in flying]
        all_mean = sum(paces.values()) / len(paces)
        wait_s = []
        for k in waiting:
            same = [v for j, v in paces.items() if self.labels.get(j) == self.labels.get(k)]
            epochs = self.runs[k].total_epochs or max(r.total_epochs for r in self.runs.values())
            wait_s.append((sum(same) / len(same) if same else all_mean) * epochs)
        # measured paces are already at the current sharing: one "core" per slot
        return makespan(wait_s, self.jobs, self.jobs, 1, started=eta_flying)

    def line(self, r: RunState) -> str:
        def pct(v):
            return "?" if v is None else f"{100 * v:.1f}%"
        done = len(self.recorded)
        return (f"[{time.strftime('%H:%M:%S')}] {r.key}: epoch {r.epoch}/{r.total_epochs}, "
                f"loss {r.loss if r.loss is None else f'{r.loss:.3f}'}, train clip@1 "
                f"{pct(r.train_acc)}, held-out video@1 {pct(r.val_acc)}, run ETA {fmt_s(r.eta())}"
                f" | study {done}/{len(self.order)} runs done, ETA {fmt_s(self.study_eta())}")

    def emit(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            self.log(text)


# --- prediction ------------------------------------------------------------------------------
def calibrate(specs: dict[str, dict[str, Any]], batch: int, eval_clips: int, threads: int = 1,
              steps: int = 3, optimizer: str = "adamw") -> dict[str, dict[str, float]]:
    """Per label: seconds per train step (``batch`` clips cut from cached frames, forward +
    backward + update) and per eval clip (cut + forward), timed after one warm-up step,
    ``threads`` threads; ``start_s``: the CPU time of starting a run's process (imports)."""
    from dataclasses import replace

    import torch
    from backend.csn import ArchSpec, build_model
    from backend.csn.perf import prepare_input, prepare_model, set_threads, training_settings

    saved = torch.get_num_threads()
    settings = replace(training_settings(torch.device("cpu"), "none"), threads=threads)
    start_s = _start_cpu_s()
    out = {}
    try:
        set_threads(threads)
        for label, spec_d in specs.items():
            spec = ArchSpec.from_dict(spec_d)
            cut_s = _clip_cut_s(spec.frames, spec.height)
            model = prepare_model(build_model(spec), torch.device("cpu"), train=True,
                                  settings=settings)
            opt = (torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD)(
                model.parameters(), lr=1e-4)
            x = prepare_input(torch.randn(batch, 3, spec.frames, spec.height, spec.width), settings)
            y = torch.randint(0, spec.num_classes, (batch,))
            times = []
            for i in range(steps + 1):
                t = time.perf_counter()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                times.append(time.perf_counter() - t)
            model.eval()
            xe = x[:max(1, min(batch, eval_clips * 2))]
            with torch.no_grad():
                model(xe)
                t = time.perf_counter()
                model(xe)
                eval_s = (time.perf_counter() - t) / len(xe)
            out[label] = {"train_step_s": min(times[1:]) + batch * cut_s,
                          "eval_clip_s": eval_s + cut_s, "start_s": start_s}
    finally:
        set_threads(saved)
    return out


def _clip_cut_s(frames: int, size: int, n: int = 64) -> float:
    """Seconds to cut one jittered training clip from cached frames (the data pipeline of a
    cached dataset), on a random video of ``size`` pixels."""
    import numpy as np

    from backend.data.framecache import CachedVideo, cached_train_clip
    from backend.data.video import ClipTransform
    rng = np.random.default_rng(0)
    video = CachedVideo(rng.integers(0, 256, (4 * frames, size, size, 3), dtype=np.uint8), 8.0,
                        4 * frames / 8.0)
    transform = ClipTransform(size=size, train=True)
    cached_train_clip(video, transform, frames=frames, rate=2, rng=rng)
    t = time.perf_counter()
    for _ in range(n):
        cached_train_clip(video, transform, frames=frames, rate=2, rng=rng)
    return (time.perf_counter() - t) / n


def _start_cpu_s() -> float:
    """CPU seconds a fresh interpreter takes to import the trainer (each run's process pays
    it once; a run also loads the frames file, which is fast)."""
    import resource
    import subprocess
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "import backend.train"], check=False, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_cpu_s(recipe: dict[str, Any], timing: dict[str, float], n_train: int, n_val: int) -> float:
    """One run's predicted CPU-seconds at full speed: its start, epochs x steps x step time,
    plus its validations (every ``eval_every`` epochs and the last) x videos x clips x clip
    time."""
    epochs = recipe.get("epochs", 45)
    steps = math.ceil(n_train / recipe.get("batch_size", 8))
    steps = min(steps, recipe.get("max_steps_per_epoch") or steps)
    evals = epochs // recipe.get("eval_every", 1) + (epochs % recipe.get("eval_every", 1) != 0)
    return (timing.get("start_s", 0.0) + epochs * steps * timing["train_step_s"]
            + evals * n_val * recipe.get("eval_clips", 10) * timing["eval_clip_s"])


def default_jobs(pending: int, cpus: int | None = None) -> int:
    """Runs trained at once: one a core (measured: three one-thread runs time-sharing 2 cores
    cost 11 % more CPU each than two); the cores a finished run leaves at the end go to the
    runs still training (:class:`backend.study.ShareCores`)."""
    return max(1, min(pending, cpus or os.cpu_count() or 1))


def predict(study: Any, n_train: int, n_val: int, jobs: int | None = None,
            threads: int | None = None, cpus: int | None = None,
            timings: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """The study's predicted wall time on this machine (``timings``: :func:`calibrate`'s, measured
    here when not given) for ``n_train`` / ``n_val`` videos."""
    cpus = cpus or os.cpu_count() or 1
    jobs = jobs or default_jobs(len(study.runs), cpus)
    threads = threads or max(1, cpus // jobs)
    specs = {r.label: r.spec for r in study.runs}
    rec = study.recipe
    timings = timings or calibrate(specs, rec.get("batch_size", 8), rec.get("eval_clips", 10),
                                   threads, optimizer=rec.get("optimizer", "adamw"))
    per_run = {r.key: run_cpu_s(rec, timings[r.label], n_train, n_val) for r in study.runs}
    wall = makespan(list(per_run.values()), jobs, cpus, threads)
    return {"wall_s": wall, "cpu_s": sum(per_run.values()) * threads, "runs": per_run,
            "timings": timings, "jobs": jobs, "threads": threads, "cpus": cpus,
            "load": list(os.getloadavg()), "n_train": n_train, "n_val": n_val}


def prediction_text(study: Any, data: str, jobs: int | None = None,
                    threads: int | None = None) -> str:
    """The prediction for ``study`` on the dataset folder ``data`` in one sentence."""
    from backend.data.datasets import load_splits
    splits = load_splits(data)
    p = predict(study, len(splits.train), len(splits.val), jobs=jobs, threads=threads)
    return describe(p, len(study.runs), str(data))


def describe(p: dict[str, Any], runs: int, source: str) -> str:
    per_label = ", ".join(f"{k} {1e3 * v['train_step_s']:.0f} ms/step"
                          for k, v in p["timings"].items())
    return (f"predicted: {fmt_s(p['wall_s'])} wall, {p['cpu_s']:.0f} CPU-s for {runs} runs, "
            f"{p['jobs']} at a time x {p['threads']} thread(s) on {p['cpus']} cores; "
            f"{p['n_train']} train / {p['n_val']} held-out videos ({source}); calibration: "
            f"{per_label} (load {p['load'][0]:.1f}: a loaded machine runs slower than this; "
            f"process start and filling the frame cache, a few s a run, are not counted)")
