"""Hostile specs through every entry point: each refused quickly, in bounded memory, with one
line naming the field; and a conv head's pool window that does not fit its clip is refused
by counting, building, predicting, evaluating and exporting, naming the smallest clip."""
from __future__ import annotations

import copy
import json
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from backend.training.checkpoint import FORMAT, CheckpointError, load_checkpoint
from backend.cli import run_cli
from backend.csn import ArchSpec, SpecError, StageSpec, build_model, count, preset
from backend.csn.bounds import MAX_JSON_BYTES
from backend.csn.loading import spec_from_data, spec_from_text
from backend.csn.clipfit import smallest_clip

BASE = preset("ir-csn-26").to_dict()
PEAK_BYTES = 200 * 2**20
SECONDS = 10.0   # the rule is 1 s; a 10x margin for a loaded 2-core machine (old code: 20 s to never)


def _edit(fn) -> dict:
    d = copy.deepcopy(BASE)
    fn(d)
    return d


def _blocks(n: int, every: bool):
    def f(d):
        for s in d["stages"] if every else d["stages"][:1]:
            s["blocks"] = n
    return f


def _set(**kw):
    return lambda d: d.update(kw)


def _unknown_keys_50mb() -> str:
    keys = ",".join(f'"{i:07d}{"x" * 1000}": 0' for i in range(50_000))
    return '{"stages": [], ' + keys + "}"


#: name -> (JSON text, the field or rule the one-line error must name)
HOSTILE: dict[str, tuple[str, str]] = {
    "1e6 blocks in one stage": (json.dumps(_edit(_blocks(10**6, False))), "conv2_x.blocks"),
    "1e6 blocks in every stage": (json.dumps(_edit(_blocks(10**6, True))), "blocks"),
    "1e18 blocks": (json.dumps(_edit(_blocks(10**18, True))), "blocks"),
    "nesting 1000 deep": ('{"name": ' + "[" * 1000 + "]" * 1000 + "}", "nested"),
    "5000-digit int": (json.dumps(BASE).replace('"frames": 8', '"frames": ' + "9" * 5000), "digits"),
    "dropout abc": (json.dumps(_edit(_set(dropout="abc"))), "dropout"),
    "50 MB of unknown keys": (None, "bytes"),   # built on demand (50 MB)
    "NaN mean": (json.dumps(_edit(_set(input_mean=[0.5, 0.5, 0.5]))).replace(
        '"input_mean": [0.5', '"input_mean": [NaN'), "NaN"),
    "Inf std": (json.dumps(_edit(_set(input_std=[0.5, 0.5, 0.5]))).replace(
        '"input_std": [0.5', '"input_std": [Infinity'), "Infinity"),
    "empty spec": ("{}", "stages"),
    "bool as int": (json.dumps(_edit(_set(head="conv", head_pool=[True, 1, 1]))), "head_pool"),
    "int as bool": (json.dumps(_edit(_set(pool1=1))), "pool1"),
}


def hostile_text(name: str) -> str:
    text, _ = HOSTILE[name]
    return _unknown_keys_50mb() if text is None else text


def hostile_data(name: str):
    """The same inputs as Python data (what enqueue_run, the worker or a checkpoint hold)."""
    if name == "nesting 1000 deep":
        v: list = []
        for _ in range(1000):
            v = [v]
        return {**BASE, "name": v}
    if name == "5000-digit int":
        return {**BASE, "frames": 10**5000}
    if name == "50 MB of unknown keys":
        return {**BASE, **{f"{i:07d}{'x' * 1000}": 0 for i in range(50_000)}}
    if name == "NaN mean":
        return {**BASE, "input_mean": [float("nan"), 0.5, 0.5]}
    if name == "Inf std":
        return {**BASE, "input_std": [float("inf"), 0.5, 0.5]}
    return json.loads(HOSTILE[name][0])


def refused(fn, *args, **kw) -> str:
    """Call ``fn``; it must raise SpecError (or ValueError) within SECONDS and PEAK_BYTES.
    Returns the message, which must be one short line."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError) as e:
            fn(*args, **kw)
    finally:
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    msg = str(e.value)
    assert elapsed < SECONDS and peak < PEAK_BYTES, (elapsed, peak / 2**20, msg[:200])
    assert "\n" not in msg and len(msg) < 400, msg[:500]
    return msg


@pytest.mark.parametrize("name", list(HOSTILE))
def test_python_api_and_builder_upload_refuse(name):
    """spec_from_text is what the Builder's upload and every JSON reader call."""
    text, word = hostile_text(name), HOSTILE[name][1]
    msg = refused(spec_from_text, text.encode(), "upload")
    assert word in msg or (word == "bytes" and str(f"{MAX_JSON_BYTES:,}") in msg), msg
    refused(lambda: ArchSpec.from_json(text).validate())


@pytest.mark.parametrize("name", list(HOSTILE))
def test_parsed_data_refused_as_the_queue_worker_and_checkpoints_see_it(name):
    from jobs.supervise import _validate
    data = hostile_data(name)
    refused(spec_from_data, data, "spec")
    tracemalloc.start()
    t0 = time.perf_counter()
    problem = _validate(data, "/nowhere", {})          # the worker: fails the run, goes on
    elapsed, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert problem and problem.startswith("invalid architecture") and "\n" not in problem
    assert len(problem) < 400 and elapsed < SECONDS and peak < PEAK_BYTES


CLI_NAMES = ["1e6 blocks in every stage", "1e18 blocks", "nesting 1000 deep", "5000-digit int",
             "dropout abc", "50 MB of unknown keys", "NaN mean", "empty spec", "bool as int"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err[:3]
    assert len(err[0]) < 400
    return err[0]


@pytest.mark.parametrize("name", CLI_NAMES)
def test_count_and_train_cli_one_line(name, tmp_path, capsys):
    from backend import count as count_cli
    from backend import train as train_cli
    path = tmp_path / "spec.json"
    path.write_text(hostile_text(name))
    t0 = time.perf_counter()
    assert run_cli(count_cli.main, [str(path)]) == 2
    _one_error_line(capsys)
    rc = run_cli(train_cli.main, ["--arch", str(path), "--data", str(tmp_path), "--out",
                                  str(tmp_path / "out")])
    assert rc in (1, 2) and time.perf_counter() - t0 < 2 * SECONDS
    _one_error_line(capsys)
    assert not (tmp_path / "out").exists()          # refused before anything was written


@pytest.mark.parametrize("name", ["1e18 blocks", "nesting 1000 deep", "empty spec", "int as bool"])
def test_track_cli_one_line_and_no_row(name, store, tmp_path, capsys):
    from jobs import api, track
    path = tmp_path / "spec.json"
    path.write_text(hostile_text(name))
    assert run_cli(track.main, ["--arch", str(path), "--data", str(tmp_path), "--", "true"]) == 2
    _one_error_line(capsys)
    assert run_cli(track.main, ["--arch", "ir-csn-26", "--data", str(tmp_path), "--hparams",
                                "[" * 1000 + "]" * 1000, "--", "true"]) == 2
    assert "--hparams" in _one_error_line(capsys)
    assert api.list_runs() == []


def _checkpoint(path: Path, spec_d) -> Path:
    torch.save({"format": FORMAT, "model": {}, "spec": spec_d, "classes": ["a", "b"]}, path)
    return path


@pytest.mark.parametrize("name", ["1e18 blocks", "5000-digit int", "NaN mean", "empty spec",
                                  "bool as int", "nesting 1000 deep"])
def test_checkpoint_specs_refused_by_load_and_export_cli(name, tmp_path, capsys):
    from backend import export
    data = hostile_data(name)
    if name in ("5000-digit int", "nesting 1000 deep"):
        data = {**BASE, "frames": 2**70} if name == "5000-digit int" else {**BASE, "name": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}
    ck = _checkpoint(tmp_path / "c.pt", data)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(ck)
    assert "\n" not in str(e.value) and "spec" in str(e.value)
    assert run_cli(export.main, [str(ck), "--format", "torchscript", "--out", str(tmp_path / "x")]) == 2
    _one_error_line(capsys)


def test_other_clis_bad_input_one_line(tmp_path, capsys):
    from backend import convert, evaluate, study, synth
    assert run_cli(study.main, ["plan", "grid", "--field", "blocks=1000000"]) != 0
    _one_error_line(capsys)
    assert run_cli(study.main, ["plan", "grid", "--field", "blocks=" + "9" * 5000]) != 0
    _one_error_line(capsys)
    assert run_cli(evaluate.main, [str(tmp_path / "none.pt"), str(tmp_path)]) != 0
    _one_error_line(capsys)
    (tmp_path / "bad.pth").write_bytes(b"\x00" * 100)
    assert run_cli(convert.main, [str(tmp_path / "bad.pth"), "--out", str(tmp_path / "o.pt")]) != 0
    _one_error_line(capsys)
    assert run_cli(synth.main, ["--out", str(tmp_path / "s"), "--per-class", "0"]) != 0
    _one_error_line(capsys)


def test_enqueue_refuses_and_says_what_was_filled(store, tmp_path):
    from jobs import api
    data = tmp_path / "var" / "d"
    data.mkdir(parents=True)
    for name in HOSTILE:
        if name != "50 MB of unknown keys":
            refused(api.enqueue_run, hostile_data(name), str(data), {"epochs": 1})
    assert api.list_runs() == []
    partial = {k: v for k, v in BASE.items() if k not in ("pool2", "dropout")}
    rid = api.enqueue_run(partial, str(data), {"epochs": 1})
    r = api.get_run(rid)
    assert r["notes"].startswith("filled from defaults: ") and {"pool2", "dropout"} <= set(
        r["notes"].split(": ", 1)[1].split(", ")), r["notes"]
    assert r["spec"]["pool2"] is False and r["spec"]["dropout"] == 0.0


def test_preset_form_and_limits_in_the_error():
    loaded = spec_from_data({"preset": "ir-csn-26", "frames": 16})
    assert loaded.spec.frames == 16 and loaded.spec.stages == preset("ir-csn-26").stages
    msg = refused(count, preset("ir-csn-26", stage_overrides={2: {"blocks": 129}}))
    assert "conv4_x.blocks" in msg and "128" in msg
    msg = refused(count, preset("ir-csn-26", stage_overrides={2: {"width": 10**9}}))
    assert "conv4_x.width" in msg and "8,192" in msg
    assert count(preset("ir-csn-152", frames=64)).totals.flops > 0     # real nets stay valid


# --- a conv head's window -------------------------------------------------------------------

R101 = dict(head="conv", head_pool=(4, 7, 7))


def test_count_refuses_a_window_larger_than_conv5_output():
    msg = refused(count, preset("ir-csn-101", frames=8, **R101))
    assert msg.startswith("head_pool: (4, 7, 7) is larger than conv5's output (1, 7, 7) at 8x224x224")
    assert count(preset("ir-csn-101", frames=32, **R101)).totals.flops > 0
    spec = preset("ir-csn-101", frames=32, **R101)
    t, s = smallest_clip(spec)
    from dataclasses import replace
    ok = lambda f, z: replace(spec, frames=f, height=z, width=z)  # noqa: E731
    ok(t, s).validate()
    for f, z in ((t - 1, s), (t, s - 1)):
        with pytest.raises(SpecError, match="head_pool|smaller than its stride"):
            ok(f, z).validate()


def _tiny_conv_head(frames=16, size=64) -> ArchSpec:
    return ArchSpec(name="tiny-conv", stem_width=4, frames=frames, height=size, width=size, num_classes=3,
                    head="conv", head_pool=(2, 2, 2),
                    stages=[StageSpec(1, 8 * 2**i, 4 * 2**i, "ir") for i in range(4)])


def test_build_and_forward_refuse_instead_of_clamping():
    with pytest.raises(SpecError, match=r"head_pool: \(2, 2, 2\) is larger than conv5's output \(1, 1, 1\)"):
        build_model(_tiny_conv_head(frames=8, size=32))
    model = build_model(_tiny_conv_head()).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 64, 64)).shape == (1, 3)
        with pytest.raises(ValueError, match=r"head_pool \(2, 2, 2\) is larger than conv5's output"):
            model(torch.randn(1, 3, 8, 32, 32))


def test_predictor_refuses_a_clip_its_head_cannot_pool(tmp_path, capsys):
    from backend import export
    from backend.inference.predictor import ModelLoadError, Predictor
    spec = _tiny_conv_head()
    path = tmp_path / "conv.pt"
    torch.save({"format": FORMAT, "model": build_model(spec).state_dict(), "spec": spec.to_dict(),
                "classes": ["a", "b", "c"], "config": {"frames": 16, "size": 64}}, path)
    assert Predictor(path).frames == 16
    with pytest.raises(ModelLoadError) as e:
        Predictor(path, frames=8, size=32)
    least = smallest_clip(spec)
    assert "head_pool" in str(e.value) and f"smallest clip this model runs at is {least[0]}x{least[1]}" in str(e.value)
    assert run_cli(export.main, [str(path), "--format", "torchscript", "--out", str(tmp_path / "x.pt"),
                                 "--frames", "8", "--size", "32"]) == 2
    assert "head_pool" in _one_error_line(capsys)


# --- the pages ------------------------------------------------------------------------------

PAGE_NAMES = ["1e18 blocks", "nesting 1000 deep", "5000-digit int", "50 MB of unknown keys",
              "NaN mean", "empty spec", "bool as int"]


def test_builder_upload_page_refuses_in_one_line_and_says_what_was_filled():
    from tests.test_app import _app, _metrics
    at = _app()
    before = _metrics(at)["Multiply-adds"]
    for name in PAGE_NAMES:
        at.file_uploader(key="builder_upload").upload("h.json", hostile_text(name).encode(),
                                                      "application/json").run()
        assert not at.exception, (name, at.exception)
        errs = [e.value for e in at.error if "Could not load" in e.value]
        assert len(errs) == 1 and "\n" not in errs[0] and len(errs[0]) < 400, (name, errs)
        assert _metrics(at)["Multiply-adds"] == before                  # nothing was loaded
    partial = {k: v for k, v in preset("ip-csn-50").to_dict().items() if k != "pool2"}
    at.file_uploader(key="builder_upload").upload("p.json", json.dumps(partial).encode(),
                                                  "application/json").run()
    assert not at.exception and _metrics(at)["Multiply-adds"] == "11.9 G"
    assert any("filled from defaults: pool2" in i.value for i in at.info)


def test_study_page_refuses_hostile_grid_values(store):
    from streamlit.testing.v1 import AppTest
    main_py = Path(__file__).resolve().parent.parent / "app" / "main.py"
    at = AppTest.from_file(str(main_py), default_timeout=60)
    at.run()
    at.switch_page(str(main_py.parent / "views" / "study.py")).run()
    at.selectbox(key="st_template").set_value("grid").run()
    for values in ("blocks=1000000", "blocks=" + "9" * 300, "dropout=NaN", "groups=" + ",".join(["2"] * 100)):
        t0 = time.perf_counter()
        at.text_input(key="st_field").set_value(values).run()
        assert time.perf_counter() - t0 < SECONDS and not at.exception, (values, at.exception)
        errs = [e.value for e in at.error if "Cannot plan" in e.value]
        assert len(errs) == 1 and "\n" not in errs[0] and len(errs[0]) < 400, (values[:40], errs)


def test_count_cli_lists_valid_values_and_what_was_defaulted(tmp_path, capsys):
    from backend import count as count_cli
    bad = _edit(lambda d: d["stages"][1].update(block="bottleneck-G", groups=3))
    (tmp_path / "g.json").write_text(json.dumps(bad))
    assert run_cli(count_cli.main, [str(tmp_path / "g.json")]) == 2
    line = _one_error_line(capsys)
    assert "not divisible by 3 groups; valid: --stage 1.groups=1 | 2 | 4 | 8" in line, line
    assert run_cli(count_cli.main, ["ir-csn-101", "--frames", "8", "--head", "conv", "--head-pool", "4,7,7"]) == 2
    least = smallest_clip(preset("ir-csn-101", frames=32, **R101))
    assert f"head_pool: (4, 7, 7) is larger than conv5's output (1, 7, 7) at 8x224x224" in (
        line := _one_error_line(capsys)) and f"--frames {least[0]} or more" in line, line
    (tmp_path / "p.json").write_text(json.dumps({k: v for k, v in BASE.items() if k != "dropout"}))
    assert run_cli(count_cli.main, [str(tmp_path / "p.json")]) == 0
    assert "note: p.json: filled from defaults: dropout" in capsys.readouterr().err
