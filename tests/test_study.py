"""Studies: planning (costs = the counter's), a real tiny study run, the paper-style report."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from backend.csn import ArchSpec, count
from backend.study import RECIPES, Study, default_jobs, main, plan, run_study
from backend.training.report import table_markdown, table_rows
from tests.helpers.motion_data import make_dataset


def test_table2_quick_plan_counts_every_run():
    st = plan("table2-quick")
    assert [r.label for r in st.runs] == ["ResNet3D-26", "ir-CSN-26", "ip-CSN-26"]
    assert st.recipe_name == "quick" and st.args["width"] == 16
    for r in st.runs:
        spec = ArchSpec.from_dict(r.spec)
        t = count(spec).totals
        assert r.costs == {"params": t.params, "flops": t.flops, "interactions": t.interactions}
        assert spec.stages[0].inner == 16 and spec.stages[3].inner == 128 and not spec.pool1
        assert (spec.frames, spec.height, spec.num_classes) == (8, 32, 8)
    flops = {r.label: r.costs["flops"] for r in st.runs}
    assert flops["ir-CSN-26"] < flops["ip-CSN-26"] < flops["ResNet3D-26"]


def test_fig67_and_grid_plans_follow_the_paper_order():
    st = plan("fig67", blocks=8, groups=(2, 4), seeds=[0, 1], width=16, recipe="tiny")
    simple = [r.label for r in st.runs if r.family == "simple-X-8" and r.seed == 0]
    assert simple == ["simple-8", "simple-G-8 g2", "simple-G-8 g4", "simple-D-8"]
    bott = [r.label for r in st.runs if r.family == "bottleneck-X-8" and r.seed == 1]
    assert bott[0] == "bottleneck-8" and bott[-1] == "bottleneck-DG-8 g4" and len(bott) == 6
    inter = [r.costs["interactions"] for r in st.runs if r.family == "simple-X-8" and r.seed == 0]
    assert inter[0] > inter[1] > inter[2]                       # more groups: fewer pairs
    g = plan("grid", base="bottleneck-G-8", field_="groups=1,2,4", stage=1, recipe="tiny")
    assert [r.label for r in g.runs] == [f"bottleneck-G-8 groups={v}" for v in (1, 2, 4)]
    assert [ArchSpec.from_dict(r.spec).stages[1].groups for r in g.runs] == [1, 2, 4]
    flops = [r.costs["flops"] for r in g.runs]
    assert flops[0] > flops[1] > flops[2]
    with pytest.raises(ValueError, match="groups=2 applies only to"):
        plan("grid", base="ir-csn-26", field_="groups=2", recipe="tiny")
    with pytest.raises(ValueError, match="unknown study template"):
        plan("table9")


def test_plan_cli_and_errors(capsys):
    assert main(["plan", "table2-quick", "--no-predict"]) == 0
    out = capsys.readouterr().out
    assert "ir-CSN-26_s0" in out and "recipe quick" in out
    assert main(["plan", "table2", "--depth", "50", "--width", "16", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["paper"] for r in doc["runs"]] == ["resnet3d-50", "ir-csn-50", "ip-csn-50"]
    assert main(["plan", "nope"]) == 2
    assert "unknown study template" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    data = make_dataset(tmp_path_factory.mktemp("motion"), per_class=4, val_per_class=2)
    out = tmp_path_factory.mktemp("study")
    st = plan("table2", depth=26, width=4, recipe="tiny", seeds=[0, 1], num_classes=3,
              name="tiny")
    return run_study(st, str(data), out, threads=1, log=lambda _: None), out


def test_runs_train_one_a_core_and_the_tail_takes_the_cores_left():
    assert [default_jobs(n, cpus=2) for n in (0, 1, 3, 13)] == [1, 1, 2, 2]
    assert default_jobs(3, cpus=16) == 3


def test_a_run_takes_the_cores_that_finished_runs_left(tmp_path):
    import torch

    from backend.study import ShareCores, write_in_flight
    saved = torch.get_num_threads()
    share = ShareCores(tmp_path, threads=1, cpus=2)
    try:
        write_in_flight(tmp_path, 2)
        share({})
        assert torch.get_num_threads() == 1
        write_in_flight(tmp_path, 1)          # the other run finished: this one takes both cores
        share({})
        assert torch.get_num_threads() == 2
        (tmp_path / ".in_flight").write_text("garbage")
        share({})                             # unreadable: left as it is
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_a_tiny_study_runs_and_writes_the_paper_report(tiny_study):
    doc, out = tiny_study
    assert doc["jobs"] == default_jobs(6) > 1 and doc["threads_per_run"] == 1   # worker processes
    assert [r["status"] for r in doc["results"]] == ["succeeded"] * 6
    assert [r["key"] for r in doc["results"]] == [r.key for r in Study.from_dict(doc["study"]).runs]
    assert all(0 <= r["video_top1"] <= 1 and r["cpu_s"] > 0 for r in doc["results"])
    assert json.loads((out / "study.json").read_text())["results"] == doc["results"]
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [r["model"] for r in rows] == ["ResNet3D-26", "ir-CSN-26", "ip-CSN-26"]
    assert all(r["seeds"] == "2" and r["paper video_top1"] for r in rows)
    assert rows[1]["paper flops"] == "4.0" and rows[1]["paper video_top1"] == "62.4"
    md = (out / "table.md").read_text()
    assert "Kinetics" in md and "± " in md
    for name in ("table2", "fig5", "fig6", "fig7"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (out / f"{name}.svg").read_bytes()[:2000]
    # Figure 5 compares two models (as the paper's), not two seeds of one
    from backend.training.report import figure5
    labels = figure5(doc).axes[0].get_legend_handles_labels()[1]
    assert {name.rsplit(" ", 2)[0] for name in labels} == {"ResNet3D-26", "ir-CSN-26"}
    # the study decoded its videos once; every run took its frames from that file
    starts = [json.loads((out / "runs" / r["key"] / "metrics.jsonl").open().readline())
              for r in doc["results"]]
    assert doc["frames"]["videos"] > 0 and (out / "frames.npz").is_file()
    assert all(e["frame_cache"]["from_file"] == doc["frames"]["videos"] for e in starts)
    # a second run of the same study skips the finished runs
    again = run_study(plan("table2", depth=26, width=4, recipe="tiny", seeds=[0, 1],
                           num_classes=3, name="tiny"), doc["data"], out, log=lambda _: None)
    assert again["results"] == doc["results"]


def test_a_spawned_study_worker_trains_with_dataloader_workers(tiny_study, tmp_path):
    """A pool worker is a spawned process, so its DataLoader workers are spawned too: the
    dataset, frame cache and worker init must pickle (a lambda there failed every run)."""
    doc, _ = tiny_study
    st = plan("table2", depth=26, width=4, recipe={**RECIPES["tiny"], "workers": 1}, num_classes=3,
              name="spawned")
    got = run_study(st, doc["data"], tmp_path / "s", threads=1, jobs=2, only=["ir-CSN-26"],
                    log=lambda _: None)
    (r,) = got["results"]
    assert r["status"] == "succeeded" and 0 <= r["video_top1"] <= 1, r.get("error")


def test_table_pools_seeds_and_leaves_missing_results_empty(tiny_study):
    doc, _ = tiny_study
    rows = table_rows(dict(doc, results=[r for r in doc["results"] if r["seed"] == 0][:2]))
    assert [r["seeds"] for r in rows] == [1, 1, 0] and rows[2]["video@1 (%)"] is None
    assert "| ip-CSN-26 |" in table_markdown(rows) and "—" in table_markdown(rows)


def test_study_page_launches_a_study_row_with_its_runs_and_cancels_it(tmp_path, store):
    """Study page (AppTest, a tmp SQLite store, no worker): plan, launch, cancel the study."""
    import db
    from streamlit.testing.v1 import AppTest

    try:
        from jobs import api
        data = make_dataset(tmp_path / "var" / "datasets" / "m", per_class=1, val_per_class=1)
        main_py = Path(__file__).resolve().parent.parent / "app" / "main.py"
        at = AppTest.from_file(str(main_py), default_timeout=60)
        at.run()
        at.switch_page(str(main_py.parent / "views" / "study.py")).run()
        assert not at.exception, at.exception
        at.selectbox(key="st_template").set_value("table2").run()
        at.selectbox(key="st_recipe").set_value("tiny").run()
        at.number_input(key="st_width").set_value(4).run()
        at.text_input(key="st_data").set_value(str(tmp_path / "elsewhere")).run()
        assert any("refused" in e.value for e in at.error)
        at.text_input(key="st_data").set_value("datasets/missing").run()
        assert any("No dataset" in e.value for e in at.error)
        at.text_input(key="st_data").set_value(str(data)).run()
        at.text_input(key="st_name").set_value("t2").run()
        at.button[[b.label for b in at.button].index("Predict wall time")].click().run()
        assert any(re.match(r"predicted: .* wall, \d+ CPU-s for 3 runs", i.value) for i in at.info)
        at.button[[b.label for b in at.button].index("Launch study")].click().run()
        assert not at.exception, at.exception
        (st,) = api.list_studies()
        got = api.get_study(st["id"])
        assert got["name"] == "t2" and [r["key"] for r in got["runs"]] == [
            "ResNet3D-26_s0", "ir-CSN-26_s0", "ip-CSN-26_s0"]
        assert all(r["status"] == "queued" and r["spec"]["num_classes"] == 3 for r in got["runs"])
        assert got["runs"][0]["hparams"]["epochs"] == 1 and "pool1" not in got["runs"][0]["hparams"]
        table = at.table[0].value            # pending runs: every cell a string, "—" = unknown
        assert list(table["model"]) == ["ResNet3D-26", "ir-CSN-26", "ip-CSN-26"]
        assert set(table["std (%)"]) == {"—"} and set(table["video@1 (%)"]) == {"—"}
        assert api.cancel_study(st["id"]) == 3
        assert {r["status"] for r in api.get_study(st["id"])["runs"]} == {"cancelled"}
        assert api.list_studies()[0]["cancelled"] and api.cancel_study(st["id"]) == 0
    finally:
        db.dispose_engines()


def test_only_keeps_the_whole_plan_and_report_merges_split_studies(tiny_study, tmp_path):
    doc, out = tiny_study
    st = plan("table2", depth=26, width=4, recipe="tiny", num_classes=3, name="tiny")
    empty = run_study(st, doc["data"], tmp_path / "none", only=["no-such-run"], log=lambda _: None)
    assert empty["results"] == [] and len(empty["study"]["runs"]) == 3
    parts = []
    for i, labels in enumerate((["ResNet3D-26"], ["ir-CSN-26", "ip-CSN-26"])):
        part = dict(doc, study=dict(doc["study"], runs=[r for r in doc["study"]["runs"]
                                                        if r["label"] in labels]),
                    results=[r for r in doc["results"] if r["label"] in labels])
        (tmp_path / f"p{i}").mkdir()
        (tmp_path / f"p{i}" / "study.json").write_text(json.dumps(part))
        parts.append(str(tmp_path / f"p{i}"))
    assert main(["report", *parts]) == 0
    assert (tmp_path / "p0" / "table.csv").read_text() == (out / "table.csv").read_text()
