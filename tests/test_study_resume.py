"""Study progress lines off a terminal, resume after an interrupt, seeds added to a finished
study, and the wall-time prediction (tiny in-process runs)."""
from __future__ import annotations

import json
import re

import pytest

import backend.train as train_mod
from backend.study import RECIPES, main, plan, run_study
from backend.training.progress import fmt_s, makespan, predict, speed
from tests.helpers.motion_data import make_dataset

RECIPE = {**RECIPES["tiny"], "epochs": 3, "eval_every": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return str(make_dataset(tmp_path_factory.mktemp("motion"), per_class=3, val_per_class=2))


def _plan(seeds=(0,)):
    return plan("table2", depth=26, width=4, recipe=dict(RECIPE), seeds=list(seeds),
                num_classes=3, name="resume")


def test_progress_lines_off_a_terminal_then_resume_and_add_seeds(data, tmp_path, monkeypatch,
                                                                 capsys):
    lines: list[str] = []
    ref = run_study(_plan(), data, tmp_path / "ref", threads=1, jobs=1, only=["ir-CSN-26"],
                    log=lines.append, tty=False)
    progress = [x for x in lines if "epoch " in x]
    assert len(progress) == 3, lines                       # one line per validation
    assert re.search(r"ir-CSN-26_s0: epoch 3/3, loss \d+\.\d{3}, train clip@1 \d+\.\d%, "
                     r"held-out video@1 \d+\.\d%, run ETA 0 s \| study 0/1 runs done, ETA ",
                     progress[-1]), progress[-1]
    assert "epoch 1/3" in progress[0] and "succeeded" in lines[-1]

    # interrupted after epoch 2's checkpoint (as Ctrl-C would), then --resume DIR
    save = train_mod._save_checkpoint

    def stop_after_two(r, metrics):
        save(r, metrics)
        if r.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_save_checkpoint", stop_after_two)
    out = tmp_path / "st"
    with pytest.raises(KeyboardInterrupt):
        run_study(_plan(), data, out, threads=1, jobs=1, only=["ir-CSN-26"], log=lambda _: None)
    monkeypatch.setattr(train_mod, "_save_checkpoint", save)
    assert json.loads((out / "study.json").read_text())["results"] == []
    other = plan("table2", depth=26, width=4, recipe={**RECIPE, "epochs": 4}, num_classes=3)
    with pytest.raises(ValueError, match="trained with another epochs"):
        run_study(other, data, out, jobs=1, only=["ir-CSN-26"], log=lambda _: None)
    assert main(["run", "--resume", str(out), "--only", "ir-CSN-26", "--threads", "1"]) == 0
    assert "resuming 1 from checkpoints" in capsys.readouterr().out
    (got,) = json.loads((out / "study.json").read_text())["results"]
    (want,) = ref["results"]
    assert got["resumed"] and not want["resumed"]
    steps = [[p[0] for p in r["history"]["train_error"]] for r in (got, want)]
    assert steps[0] == steps[1]
    for kind in ("train_error", "val_error"):              # the resumed run's curve is the same
        assert sum(got["history"][kind], []) == pytest.approx(sum(want["history"][kind], []))
    assert got["video_top1"] == pytest.approx(want["video_top1"]) and got["val_videos"] == 6

    # seeds added to the finished study: seed 0 is kept as it was
    assert main(["run", "--resume", str(out), "--seeds", "1", "--only", "ir-CSN-26",
                 "--threads", "1"]) == 0
    doc = json.loads((out / "study.json").read_text())
    assert [r["key"] for r in doc["results"]] == ["ir-CSN-26_s0", "ir-CSN-26_s1"]
    assert doc["results"][0] == got and doc["study"]["seeds"] == [0, 1]
    assert "ir-CSN-26 |" in (out / "table.md").read_text()
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2


def test_makespan_shares_the_cores_and_the_prediction_counts_steps():
    assert makespan([10, 10, 10], jobs=3, cpus=2) == pytest.approx(15)    # 30 CPU-s on 2 cores
    assert makespan([10, 10, 10], jobs=1, cpus=2) == pytest.approx(30)
    assert makespan([10, 2], jobs=2, cpus=2) == pytest.approx(2 + 8 / speed(2))  # tail: 2 cores
    assert makespan([4], jobs=2, cpus=2, started=[6]) == pytest.approx(4 + 2 / speed(2))
    assert speed(2) == pytest.approx(1.65) and speed(1) == 1
    st = _plan(seeds=(0, 1))
    timing = {"train_step_s": 0.5, "eval_clip_s": 0.01, "start_s": 2.0}
    p = predict(st, n_train=20, n_val=6, jobs=1, threads=1, cpus=1,
                timings={r.label: timing for r in st.runs})
    steps = 2  # tiny: at most 2 steps an epoch; 3 epochs, 3 validations of 6 videos x 1 clip
    assert p["runs"]["ir-CSN-26_s0"] == pytest.approx(2.0 + 3 * steps * 0.5 + 3 * 6 * 1 * 0.01)
    assert p["wall_s"] == pytest.approx(6 * p["runs"]["ir-CSN-26_s0"])
    assert fmt_s(3725) == "1 h 02 min" and fmt_s(245) == "4 min 05 s" and fmt_s(None) == "?"


def test_plan_prints_a_measured_prediction(data, capsys):
    assert main(["plan", "table2", "--depth", "26", "--width", "4", "--recipe", "tiny",
                 "--classes", "3", "--data", data, "--only", "ir-CSN-26", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"predicted: .* wall, \d+ CPU-s for 1 runs, 1 at a time x \d+ thread\(s\)",
                     out), out
    assert "ir-CSN-26 " in out and "ms/step" in out


def test_fig67_quick_is_the_fig67_sweep_at_8_blocks_width_16_and_plans_with_a_prediction():
    st = plan("fig67-quick", seeds=[0, 1, 2])
    assert st.recipe_name == "quick" and st.args == {"blocks": 8, "width": 16}
    assert len(st.runs) == 3 * 13
    assert {r.family for r in st.runs} == {"simple-X-8", "bottleneck-X-8"}
    assert [r.label for r in st.runs if r.seed == 0][:5] == [
        "simple-8", "simple-G-8 g2", "simple-G-8 g4", "simple-G-8 g8", "simple-D-8"]
    timing = {"train_step_s": 0.1, "eval_clip_s": 0.001}
    p = predict(st, 336, 144, jobs=3, threads=1, cpus=2, timings={r.label: timing for r in st.runs})
    assert p["wall_s"] == pytest.approx(sum(p["runs"].values()) / 2)   # 2 cores kept busy


def test_idle_core_seconds_count_the_cores_no_run_used():
    from backend.study import idle_core_s
    runs = [{"started_at": 100, "wall_s": 10}, {"started_at": 100, "wall_s": 4},
            {"started_at": 104, "wall_s": 4}, {"started_at": 50, "wall_s": 5}]   # last: before t0
    assert idle_core_s(runs, 100, 110, threads=1, cpus=2) == pytest.approx(2)   # 108-110: one run
    assert idle_core_s(runs, 100, 112, threads=1, cpus=2) == pytest.approx(6)   # + 2 s of nothing
    assert idle_core_s(runs[:1], 100, 110, threads=2, cpus=2) == pytest.approx(0)
