"""Studies: a named group of runs (a template x seeds) trained with one shared recipe
(planned in :mod:`backend.training.plans`), in parallel worker processes, and the paper's
table and figures from their results (:mod:`backend.training.report`).

    python -m backend.study plan TEMPLATE [--depth 26 --width 16 --seeds 0 --recipe quick]
    python -m backend.study run TEMPLATE --data DIR --out DIR [same options] [--jobs N --threads N]
    python -m backend.study report DIR          # table.csv/.md, fig5-7.png/.svg from DIR/study.json

Templates: ``table2`` (ResNet3D / ir-CSN / ip-CSN at ``--depth``), ``table2-quick`` (the
same at depth 26, conv2 width 16, recipe ``quick``), ``fig67`` (simple-X and bottleneck-X
families with ``--blocks`` 8 or 16 over a ``--groups`` sweep, paper §4.4), ``fig67-quick``
(``fig67`` at 8 blocks, conv2 width 16, recipe ``quick``) and ``grid`` (a
``--base`` preset with ``--field NAME=V1,V2,..`` [``--stage I``]). ``--width`` scales every
stage so that conv2's 3x3x3 conv has that many channels (the paper's: 64). Held-out
accuracy is the last epoch's validation video@1 (no model selection on it).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable

from backend.csn import SpecError
from backend.training.plans import (  # noqa: F401 - re-exported: the study's API in one place
    FAMILY_LABEL, MAX_SEEDS, QUICK_DEFAULTS, RECIPES, SPEC_KNOBS, TEMPLATES, PlannedRun, Study,
    plan, replan, scale_width, train_hparams)
from backend.training.progress import default_jobs  # noqa: F401 - re-exported

#: the decoded frames every run of a study shares (``TrainConfig.cache_file``)
FRAMES_FILE = "frames.npz"
#: how many of a study's runs are training now (``ShareCores``)
IN_FLIGHT_FILE = ".in_flight"


# --- running from the command line -------------------------------------------------------------
def _history(events: list[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """Per-epoch ``[step, error]`` for train (clip) and val (video), and val video@1; an epoch
    logged twice (a resume re-ran it) counts once, the last time."""
    h: dict[str, dict[int, list[float]]] = {"train_error": {}, "val_error": {}}
    for e in events:
        if e["event"] == "epoch":
            m = e["metrics"]
            if e["split"] == "train":
                h["train_error"][e["epoch"]] = [e["step"], 1 - m["clip_top1"]]
            elif "video_top1" in m:
                h["val_error"][e["epoch"]] = [e["step"], 1 - m["video_top1"]]
    return {k: [v[ep] for ep in sorted(v)] for k, v in h.items()}


def _events(run_dir: Path) -> list[dict[str, Any]]:
    p = run_dir / "metrics.jsonl"
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def prepare_run_dir(study: Study, out: Path, run: PlannedRun) -> bool:
    """True when the run has a checkpoint to resume from (refused when it was trained with
    another spec or recipe); otherwise clear a stale event log (a run stopped before its first
    checkpoint starts over)."""
    from backend.training.checkpoint import latest_checkpoint
    run_dir = out / "runs" / run.key
    if latest_checkpoint(run_dir) is None:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        return False
    saved = json.loads((run_dir / "config.json").read_text())
    differ = sorted(k for k, v in train_hparams(study, run).items()
                    if saved["config"].get(k, v) != v)
    same_net = ({k: v for k, v in saved.get("spec", {}).items() if k != "num_classes"}
                == {k: v for k, v in run.spec.items() if k != "num_classes"})  # data sets classes
    if not same_net or differ:
        raise ValueError(f"runs/{run.key}: its checkpoint was trained with another "
                         f"{'spec' if not same_net else ', '.join(differ)}; "
                         "resume it with the same study or use a new --out")
    return True


def write_in_flight(out: Path, runs: int) -> None:
    """Tell the study's runs how many of them are training (``IN_FLIGHT_FILE``)."""
    tmp = out / f".{IN_FLIGHT_FILE}.tmp"
    tmp.write_text(str(max(runs, 0)))
    os.replace(tmp, out / IN_FLIGHT_FILE)


class ShareCores:
    """A run's event callback: when fewer runs are training than there are cores (the study's
    tail), this run takes ``cores // runs`` threads instead of leaving cores idle; read from
    ``out/IN_FLIGHT_FILE``, which the study rewrites as runs finish."""

    def __init__(self, out: Path, threads: int, cpus: int | None = None):
        self.path, self.threads = out / IN_FLIGHT_FILE, threads
        self.cpus, self.seen = cpus or os.cpu_count() or 1, None

    def __call__(self, _event: dict[str, Any]) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
            if stamp == self.seen:
                return
            self.seen = stamp
            runs = int(self.path.read_text())
        except (OSError, ValueError):
            return
        from backend.csn.perf import set_threads
        set_threads(max(self.threads, self.cpus // max(runs, 1)))


def run_one(study: Study, run: PlannedRun, data: str, out: Path,
            threads: int | None = None, resume: bool = False) -> dict[str, Any]:
    """Train one planned run in this process (``resume``: from its newest checkpoint); its
    result record (for study.json), read from the run's own event log."""
    from backend.train import TrainConfig, train
    run_dir = out / "runs" / run.key
    cfg = TrainConfig(arch=json.dumps(run.spec), data=data, out=str(run_dir), resume=resume,
                      threads=threads, progress=False, cache_file=str(out / FRAMES_FILE),
                      **train_hparams(study, run))
    t0, c0 = time.time(), _cpu_s()
    rec: dict[str, Any] = {"key": run.key, "label": run.label, "seed": run.seed,
                           "load_before": list(os.getloadavg()), "resumed": resume}
    try:
        train(cfg, callback=ShareCores(out, threads or 1) if (out / IN_FLIGHT_FILE).is_file()
              else None)
        epochs = [e for e in _events(run_dir) if e["event"] == "epoch"]
        val = [e for e in epochs if e["split"] == "val"]
        train_m = [e for e in epochs if e["split"] == "train"]
        m = val[-1]["metrics"] if val else {}
        rec.update(status="succeeded", video_top1=m.get("video_top1"),
                   clip_top1=m.get("clip_top1"), val_videos=m.get("videos"),
                   train_clip_top1=train_m[-1]["metrics"].get("clip_top1") if train_m else None)
    except Exception as e:  # noqa: BLE001 - one failed run does not end the study
        rec.update(status="failed", error=f"{type(e).__name__}: {e}")
    rec.update(started_at=t0, wall_s=round(time.time() - t0, 1), cpu_s=round(_cpu_s() - c0, 1),
               load_after=list(os.getloadavg()), history=_history(_events(run_dir)))
    return rec


def share_frames(study: Study, data: str, out: Path,
                 workers: int) -> tuple[dict[str, Any], int, int]:
    """Decode the study's videos once into ``out/FRAMES_FILE``, which every run reads instead
    of decoding them again (measured: 7.8 CPU-s a run for 1 440 videos at 32x32); the cache's
    stats and the train / held-out video counts."""
    from backend.data.datasets import load_splits
    from backend.data.framecache import FrameCache
    splits = load_splits(data)
    paths = [it.path for it in splits.train + splits.val]
    cache = FrameCache(study.recipe.get("cache_mb", 1024)).fill_shared(out / FRAMES_FILE, paths,
                                                                         workers=workers)
    return cache.stats(), len(splits.train), len(splits.val)


def _longest_first(study: Study, todo: list[PlannedRun], n_train: int, n_val: int, jobs: int,
                   threads: int, doc: dict[str, Any], log: Callable[[str], None]) -> list[PlannedRun]:
    """``todo`` with the longest predicted runs first (so that the short ones fill the tail),
    the prediction recorded in ``doc["predicted"]``."""
    from backend.training.progress import describe, predict
    p = predict(replace(study, runs=todo), n_train, n_val, jobs=jobs, threads=threads)
    doc["predicted"] = {"wall_s": round(p["wall_s"], 1), "cpu_s": round(p["cpu_s"], 1),
                        "runs": {k: round(v, 1) for k, v in p["runs"].items()},
                        "load": p["load"]}
    log(describe(p, len(todo), "measured here"))
    return sorted(todo, key=lambda r: -p["runs"][r.key])


def idle_core_s(results: list[dict[str, Any]], t0: float, t1: float, threads: int,
                cpus: int) -> float:
    """Core-seconds left idle between ``t0`` and ``t1`` by the runs that trained then (each
    busy ``threads`` cores from its start to its end): what a better schedule could win."""
    spans = [(r["started_at"], r["started_at"] + r["wall_s"]) for r in results
             if r.get("started_at") and r.get("wall_s") and r["started_at"] >= t0 - 1]
    edges = sorted({t0, t1, *(min(max(t, t0), t1) for span in spans for t in span)})
    idle = 0.0
    for a, b in zip(edges, edges[1:]):
        busy = threads * sum(1 for s, e in spans if s <= a and e >= b)
        idle += (b - a) * max(0, cpus - busy)
    return idle


def _cpu_s() -> float:
    self_, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + kids.ru_utime + kids.ru_stime


def run_study(study: Study, data: str, out: Path, threads: int | None = None,
              log: Callable[[str], None] = print, only: list[str] | None = None,
              jobs: int | None = None, tty: bool | None = None,
              predict_first: bool = False) -> dict[str, Any]:
    """Train every run (or those labelled ``only``), ``jobs`` at a time in worker processes
    (default :func:`default_jobs`, each with cores/jobs threads), skipping those already in
    ``out/study.json`` and resuming interrupted ones from their checkpoints; progress lines as
    they train (:class:`~backend.training.progress.Monitor`); the result JSON after each run and
    the report at the end. ``predict_first``: time the models first, record the predicted wall
    time beside the actual one and train the longest runs first."""
    from backend.training.progress import Monitor
    from backend.training.report import write_report
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    done = {r["key"]: r for r in old.get("results", []) if r.get("status") == "succeeded"}
    doc = {"study": study.to_dict(), "data": str(data), "results": list(done.values()),
           "started": old.get("started", time.time()), "cpu_count": os.cpu_count()}
    todo = [r for r in study.runs if r.key not in done and not (only and r.label not in only)]
    jobs = jobs or default_jobs(len(todo))
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    doc["jobs"], doc["threads_per_run"] = jobs, threads
    resume = {r.key: prepare_run_dir(study, out, r) for r in todo}
    path.write_text(json.dumps(doc, indent=1))      # --resume DIR works from the start
    t0 = time.time()
    if todo:
        doc["frames"], n_train, n_val = share_frames(study, data, out,
                                                     workers=min(jobs, os.cpu_count() or 1))
        if predict_first:
            todo = _longest_first(study, todo, n_train, n_val, jobs, threads, doc, log)
    monitor = Monitor([r.key for r in todo], {r.key: r.label for r in study.runs}, out, jobs,
                      os.cpu_count() or 1, log=log, tty=tty)

    def finished(rec: dict[str, Any]) -> None:
        doc["results"].append(rec)
        monitor.poll()
        monitor.finished(rec["key"])
        monitor.emit(f"[{time.strftime('%H:%M:%S')}] {rec['key']}: {rec['status']}: video@1 "
                     f"{rec.get('video_top1')}, {rec['wall_s']} s wall, {rec['cpu_s']} s CPU, "
                     f"load {rec['load_after'][0]:.1f}"
                     + (f" ({rec['error']})" if rec.get("error") else ""))
        path.write_text(json.dumps(doc, indent=1))

    log(f"[{time.strftime('%H:%M:%S')}] training {len(todo)} runs, {jobs} at a time, "
        f"{threads} thread(s) each" + (f", resuming {sum(resume.values())} from checkpoints"
                                       if any(resume.values()) else ""))
    with monitor:
        if jobs == 1:
            (out / IN_FLIGHT_FILE).unlink(missing_ok=True)
            for run in todo:
                finished(run_one(study, run, data, out, threads, resume[run.key]))
        else:
            _run_parallel(study, todo, data, out, threads, jobs, finished, resume)
    _finish(study, doc, old, t0, threads)
    path.write_text(json.dumps(doc, indent=1))
    write_report(doc, out)
    return doc


def _finish(study: Study, doc: dict[str, Any], old: dict[str, Any], t0: float,
            threads: int) -> None:
    """The results in plan order (not finish order), the wall time (this session's and all
    sessions'), and the core-seconds the runs left idle."""
    order = {run.key: i for i, run in enumerate(study.runs)}
    doc["results"].sort(key=lambda r: order.get(r["key"], 0))
    t1 = time.time()
    doc["wall_s"] = round(t1 - t0, 1)
    doc["idle_core_s"] = round(idle_core_s(doc["results"], t0, t1, threads, os.cpu_count() or 1), 1)
    doc["wall_s_total"] = round(old.get("wall_s_total", old.get("wall_s", 0.0)) + doc["wall_s"], 1)


def _run_parallel(study: Study, todo: list[PlannedRun], data: str, out: Path, threads: int,
                  jobs: int, finished: Callable[[dict[str, Any]], None],
                  resume: dict[str, bool]) -> None:
    """``run_one`` for each run in a pool of ``jobs`` fresh (spawned) processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    cpus = os.cpu_count() or 1
    # numba may grow to every core at the study's tail (ShareCores); torch starts at threads
    env = {"NUMBA_NUM_THREADS": str(max(threads, cpus)), "OMP_NUM_THREADS": str(threads)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)   # read by the spawned workers at import
    left = len(todo)
    write_in_flight(out, min(jobs, left))
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_one, study, run, data, out, threads, resume[run.key]): run
                       for run in todo}
            for fut in as_completed(futures):
                run = futures[fut]
                left -= 1
                write_in_flight(out, min(jobs, left))
                try:
                    finished(fut.result())
                except Exception as e:  # noqa: BLE001 - a worker process died
                    finished({"key": run.key, "label": run.label, "seed": run.seed,
                              "status": "failed", "error": f"{type(e).__name__}: {e}",
                              "wall_s": None, "cpu_s": None, "load_after": list(os.getloadavg())})
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- command line ------------------------------------------------------------------------------
def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _setting(item: str) -> tuple[str, Any]:
    from backend.train import TrainConfig
    key, _, text = item.partition("=")
    if key not in {f.name for f in fields(TrainConfig)} | set(SPEC_KNOBS) or not text:
        raise ValueError(f"--set {item!r}: expected FIELD=VALUE with a TrainConfig field, "
                         f"{' or '.join(SPEC_KNOBS)}")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("plan", "run", "report"))
    p.add_argument("template", nargs="?",
                   help=f"one of {', '.join(TEMPLATES)} (report: the study folder)")
    p.add_argument("--data", help="dataset folder (run)")
    p.add_argument("--out", help="study folder (run; default var/studies/NAME)")
    p.add_argument("--name")
    p.add_argument("--seeds", type=_ints, default=None,
                   help="e.g. 0,1,2 (default 0; with --resume: seeds to add)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="run: continue the study in DIR (its study.json): finished runs are kept, "
                        "interrupted ones resume from their checkpoints, --seeds adds seeds")
    p.add_argument("--predict", action=argparse.BooleanOptionalAction, default=True,
                   help="predict the wall time from a few timed steps of each model (run: "
                        "recorded beside the actual time, and the longest runs go first)")
    p.add_argument("--videos", default=None, metavar="TRAIN,VAL",
                   help="plan: video counts for the prediction (default: counted in --data)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="shared training recipe (default: quick)")
    p.add_argument("--depth", type=int, default=None, help="table2: 26, 50, 101 or 152")
    p.add_argument("--width", type=int, default=None, help="conv2's inner width (paper: 64)")
    p.add_argument("--blocks", type=int, default=None, help="fig67: 8 or 16")
    p.add_argument("--groups", type=_ints, default=None, help="fig67: groups sweep, e.g. 2,4,8")
    p.add_argument("--base", default=None, help="grid: base preset")
    p.add_argument("--field", dest="field_", default=None, help="grid: NAME=V1,V2,...")
    p.add_argument("--stage", type=int, default=None, help="grid: one stage (0 = conv2)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override one recipe field (a TrainConfig field or pool1), e.g. epochs=12")
    p.add_argument("--classes", type=int, default=8, help="number of classes of the data")
    p.add_argument("--only", default=None, metavar="LABELS",
                   help="run: train only these planned runs (comma-separated labels), e.g. to "
                        "split a study over processes; report DIR DIR2..: merges their results")
    p.add_argument("more", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None,
                   help="threads per run (default: cores / jobs)")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs trained at once, each in its own process (default: all pending "
                        "runs, at most cores + 1)")
    p.add_argument("--json", action="store_true", help="plan: print JSON")
    return p


def _plan_text(study: Study) -> str:
    lines = [f"study {study.name}: template {study.template}, recipe {study.recipe_name} "
             f"{json.dumps(study.recipe)}, seeds {study.seeds}",
             f"{'run':<28}{'family':<16}{'params (M)':>11}{'MAdds (G)':>11}{'interact. (M)':>14}"]
    for r in study.runs:
        c = r.costs
        lines.append(f"{r.key:<28}{r.family:<16}{c['params'] / 1e6:>11.3f}{c['flops'] / 1e9:>11.4f}"
                     f"{c['interactions'] / 1e6:>14.3f}")
    return "\n".join(lines)


def _merge_report(folder: Path, more: list[str]) -> list[Path]:
    """``report DIR [DIR2 ..]``: results of the same study trained elsewhere merged into DIR."""
    from backend.training.report import write_report
    doc = json.loads((folder / "study.json").read_text())
    for other in more:
        extra = json.loads((Path(other) / "study.json").read_text())
        keys = {r["key"] for r in doc["results"]}
        doc["results"] += [r for r in extra["results"] if r["key"] not in keys]
        planned = {(r["label"], r["seed"]) for r in doc["study"]["runs"]}
        doc["study"]["runs"] += [r for r in extra["study"]["runs"]
                                 if (r["label"], r["seed"]) not in planned]
    order = [r.key for r in Study.from_dict(doc["study"]).runs]
    doc["results"].sort(key=lambda r: order.index(r["key"]) if r["key"] in order else 0)
    (folder / "study.json").write_text(json.dumps(doc, indent=1))
    return write_report(doc, folder)


def _study_from_args(a: argparse.Namespace) -> Study:
    if a.template is None:
        raise ValueError("template: give a template (or run --resume DIR)")
    recipe: str | dict | None = a.recipe
    if a.set:
        recipe = {**RECIPES[a.recipe or "quick"], **dict(_setting(item) for item in a.set)}
    return plan(a.template, seeds=a.seeds or [0], recipe=recipe, width=a.width, name=a.name,
                num_classes=a.classes, depth=a.depth, blocks=a.blocks,
                groups=tuple(a.groups) if a.groups else None, base=a.base,
                field_=a.field_, stage=a.stage)


def _videos(a: argparse.Namespace) -> tuple[int, int, str]:
    """(train, held-out) video counts for the prediction, and where they came from."""
    if a.videos:
        n = _ints(a.videos)
        if len(n) != 2 or min(n) < 1:
            raise ValueError("--videos: expected TRAIN,VAL (two positive counts)")
        return n[0], n[1], "--videos"
    if a.data:
        from backend.data.datasets import load_splits
        sp = load_splits(a.data)
        return len(sp.train), len(sp.val), a.data
    return 336, 144, "assumed: the README's 60-per-class easy data (give --data or --videos)"


def _prediction_text(study: Study, a: argparse.Namespace) -> str:
    from backend.training.progress import describe, predict
    n_train, n_val, source = _videos(a)
    p = predict(study, n_train, n_val, jobs=a.jobs, threads=a.threads)
    return describe(p, len(study.runs), source)


def _run_cmd(a: argparse.Namespace) -> int:
    if a.resume:
        folder = Path(a.resume)
        if not (folder / "study.json").is_file():
            raise ValueError(f"--resume: no study.json in {folder}")
        doc = json.loads((folder / "study.json").read_text())
        study, data, out = replan(doc, a.seeds), a.data or doc["data"], folder
    else:
        study = _study_from_args(a)
        data, out = a.data, Path(a.out or Path("var/studies") / study.name)
    if not data:
        raise ValueError("run needs --data DIR")
    print(_plan_text(study), flush=True)
    doc = run_study(study, data, out, a.threads, only=a.only.split(",") if a.only else None,
                    jobs=a.jobs, log=lambda line: print(line, flush=True), predict_first=a.predict)
    print(f"study done in {doc['wall_s']} s ({doc['idle_core_s']} core-s idle); results in {out}")
    return 0 if all(r["status"] == "succeeded" for r in doc["results"]) else 1


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        if a.command == "report":
            if a.template is None:
                raise ValueError("report needs the study folder")
            print("\n".join(str(f) for f in _merge_report(Path(a.template), a.more)))
            return 0
        if a.command == "run":
            return _run_cmd(a)
        study = _study_from_args(a)
        if a.only:
            study.runs = [r for r in study.runs if r.label in a.only.split(",")]
        print(json.dumps(study.to_dict()) if a.json else _plan_text(study))
        if a.predict and not a.json:
            print(_prediction_text(study, a))
        return 0
    except (SpecError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from backend.cli import run_cli
    sys.exit(run_cli(main))
