"""The Streamlit pages, driven headless with streamlit.testing.v1.AppTest."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.formatting import fmt_count, fmt_delta
from backend.csn import SpecError, preset
from backend.csn.explore import default_baseline, error_field
from tests.helpers.runs import seed_run, step_points, val_point

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def _app() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_fmt_count_three_significant_digits():
    assert fmt_count(13_080_000) == "13.1 M"
    assert fmt_count(5_420_000_000) == "5.42 G"
    assert fmt_count(29_500_000_000) == "29.5 G"
    assert fmt_count(421_000_000) == "421 M"
    assert fmt_delta(10.6e9, 29.5e9).startswith("-64%")


def test_default_baseline_is_resnet3d_of_same_depth():
    assert default_baseline(preset("ir-csn-101")) == "resnet3d-101"
    assert default_baseline(preset("simple-D-8")) == "resnet3d-18"
    assert default_baseline(preset("ir-csn-50", stage_overrides={2: {"blocks": 5}})) == "resnet3d-50"


def test_error_field_maps_layers_to_stage_fields():
    spec = preset("bottleneck-G-8").with_stage(1, groups=3)
    with pytest.raises(SpecError) as e:
        spec.validate()
    assert e.value.layer == "conv3_1.conv_b" and error_field(e.value, spec) == (1, "groups")
    spec = preset("ir-csn-50").with_stage(2, groups=2)
    with pytest.raises(SpecError) as e:
        spec.validate()
    assert error_field(e.value, spec) == (2, "groups")


def test_builder_default_shows_table2_numbers_for_ir_csn_50():
    at = _app()
    m = _metrics(at)
    assert m["Parameters"] == "13.1 M"
    assert m["Multiply-adds"] == "10.6 G"
    assert m["torch FLOPs"] == "21.2 G"
    assert m["Interactions"] == "5.42 G"
    deltas = {x.label: x.delta for x in at.metric}
    assert any("Deltas against resnet3d-50" in c.value for c in at.caption)
    assert deltas["Multiply-adds"].startswith("-64%")


def test_preset_switch_changes_totals_and_resets_form():
    at = _app()
    at.selectbox(key="bld_s1_block").set_value("bottleneck").run()  # an edit, then a preset
    at.selectbox(key="bld_preset").set_value("resnet3d-50").run()
    assert not at.exception
    m = _metrics(at)
    assert (m["Parameters"], m["Multiply-adds"], m["Interactions"]) \
        == ("46.9 M", "29.5 G", "5.68 G")
    assert at.selectbox(key="bld_s1_block").value == "bottleneck"
    assert at.selectbox(key="bld_baseline").value == "resnet3d-50"
    at.selectbox(key="bld_preset").set_value("ip-csn-101").run()
    m = _metrics(at)
    assert (m["Parameters"], m["Multiply-adds"], m["Interactions"]) \
        == ("24.5 M", "15.9 G", "8.67 G")
    assert at.selectbox(key="bld_baseline").value == "resnet3d-101"


def test_stage_edit_recounts():
    at = _app()
    at.selectbox(key="bld_s2_block").set_value("bottleneck").run()
    flops = _metrics(at)["Multiply-adds"]
    assert flops != "10.6 G"
    at.selectbox(key="bld_s2_block").set_value("bottleneck-D").run()
    assert _metrics(at)["Multiply-adds"] == "10.6 G"


def test_invalid_groups_show_inline_error_without_traceback():
    at = _app()
    at.selectbox(key="bld_preset").set_value("bottleneck-G-8").run()
    assert at.number_input(key="bld_s1_groups").value == 4
    at.number_input(key="bld_s1_groups").set_value(3).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("conv3_1.conv_b" in e and "not divisible by 3 groups" in e for e in errors), errors
    # the valid values are offered, and the last valid figures stay, marked stale
    assert any("Valid groups (3x3x3) here: 1, 2, 4, 8, 16, 32, 64, 128" in e for e in errors), errors
    m = _metrics(at)
    assert m["Multiply-adds (stale)"] == _metrics(_app_with("bottleneck-G-8"))["Multiply-adds"]
    assert at.dataframe  # the layer table of the last valid design
    at.number_input(key="bld_s1_groups").set_value(8).run()
    assert not at.error and "Multiply-adds" in _metrics(at)


def _app_with(preset_name: str) -> AppTest:
    at = _app()
    at.selectbox(key="bld_preset").set_value(preset_name).run()
    return at


def test_edited_preset_gets_a_new_name_and_tstride_shows_its_default():
    at = _app_with("ir-csn-26")
    assert at.text_input(key="bld_name").value == "ir-csn-26"
    sel = at.selectbox(key="bld_s1_temporal_stride")
    assert sel.value == "auto" and sel.format_func(sel.value) == "as T-stride"  # not a placeholder
    at.selectbox(key="bld_s0_block").set_value("ip").run()
    assert at.text_input(key="bld_name").value == "ir-csn-26-edited"
    assert at.session_state["builder_spec"]["name"] == "ir-csn-26-edited"
    # /train opened directly in a new session still offers this design, under its new name
    fresh = AppTest.from_file(MAIN, default_timeout=60)
    fresh.switch_page(str(Path(MAIN).parent / "views" / "train.py")).run()
    assert not fresh.exception and fresh.radio(key="train_src").value == "Current builder design"
    assert any("**ir-csn-26-edited**" in c.value for c in fresh.caption)


def test_groups_field_only_for_grouped_blocks():
    at = _app()
    assert at.get("number_input") and not [w for w in at.number_input if w.key == "bld_s0_groups"]
    at.selectbox(key="bld_s0_block").set_value("bottleneck-G").run()
    assert at.number_input(key="bld_s0_groups").value == 4
    at.selectbox(key="bld_s0_block").set_value("bottleneck-DG").run()
    assert at.number_input(key="bld_s0_pw_groups").value == 2
    assert not at.exception and at.metric


def test_clip_too_short_is_reported():
    at = _app()
    at.number_input(key="bld_frames").set_value(2).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("too short" in e and "T-stride off" in e and "temporal_stride" not in e
               and "at least 5 frames" in e for e in errors), errors
    at.toggle(key="bld_temporal_stride").set_value(False).run()
    assert not at.error


def test_per_stage_temporal_stride_recounts():
    """conv5 keeping T (pytorchvideo's CSN) costs more multiply-adds; the weights stay."""
    at = _app()
    before = _metrics(at)
    assert not [w for w in at.selectbox if w.key == "bld_s0_temporal_stride"]  # conv2 never strides
    assert at.selectbox(key="bld_s3_temporal_stride").value == "auto"
    at.selectbox(key="bld_s3_temporal_stride").set_value("1").run()
    after = _metrics(at)
    assert not at.exception and not at.error
    assert after["Parameters"] == before["Parameters"]
    assert after["Multiply-adds"] != before["Multiply-adds"]
    at.number_input(key="bld_frames").set_value(4).run()       # conv5 input: 1 frame
    at.selectbox(key="bld_s3_temporal_stride").set_value("2").run()   # ...which cannot be halved
    assert any("conv5_1" in e.value and "temporal" in e.value for e in at.error)


def test_pool2_recounts_and_normalisation_is_shown():
    """mmaction2's with_pool2: halves T after conv2, fewer multiply-adds, same weights."""
    at = _app()
    before = _metrics(at)
    assert any("Input normalisation" in c.value and "RGB" in c.value for c in at.caption)
    at.number_input(key="bld_frames").set_value(16).run()
    mid = _metrics(at)
    at.toggle(key="bld_pool2").set_value(True).run()
    after = _metrics(at)
    assert not at.exception and not at.error
    assert after["Parameters"] == before["Parameters"]
    assert after["Multiply-adds"] != mid["Multiply-adds"]


def test_input_centre_is_a_builder_control():
    """A loaded spec's input centring shows on the form, and the form's choice is the spec's."""
    at = _app()
    assert at.selectbox(key="bld_input_centre").value == "none"
    spec = preset("ir-csn-26", input_centre="temporal")
    at.file_uploader(key="builder_upload").upload(
        "c.json", spec.to_json().encode(), "application/json").run()
    assert at.selectbox(key="bld_input_centre").value == "temporal"
    assert at.session_state["builder_spec"]["input_centre"] == "temporal"
    at.selectbox(key="bld_input_centre").set_value("none").run()
    assert not at.exception and at.session_state["builder_spec"]["input_centre"] == "none"


def test_uploaded_spec_loads_and_bad_json_is_reported():
    at = _app()
    spec = preset("ip-csn-50")
    at.file_uploader(key="builder_upload").upload(
        "s.json", spec.to_json().encode(), "application/json").run()
    assert not at.exception
    assert _metrics(at)["Multiply-adds"] == "11.9 G"
    assert at.selectbox(key="bld_preset").value is None     # no longer names the last preset
    assert at.selectbox(key="bld_preset").placeholder == "loaded from s.json"
    bad = dict(spec.to_dict(), colour="red")
    at.file_uploader(key="builder_upload").upload(
        "bad.json", json.dumps(bad).encode(), "application/json").run()
    assert any("unknown spec field" in e.value for e in at.error)
    at.file_uploader(key="builder_upload").upload("x.json", b"{not json", "application/json").run()
    assert not at.exception and any("Could not load" in e.value for e in at.error)


def test_demo_page_explains_how_to_start_when_unreachable(monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CSN_DEMO_URL", f"http://127.0.0.1:{port}")
    at = _app()
    at.switch_page(str(Path(MAIN).parent / "views" / "demo.py")).run()
    assert not at.exception
    assert any("not running" in w.value and "CSN_DEMO_URL" in w.value for w in at.warning)
    assert any("python -m app.demo" in m.value for m in at.markdown)


def test_demo_page_embeds_a_reachable_demo(monkeypatch):
    import http.server
    import threading

    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("CSN_DEMO_URL", f"http://127.0.0.1:{srv.server_address[1]}")
        at = _app()
        at.switch_page(str(Path(MAIN).parent / "views" / "demo.py")).run()
        assert not at.exception and not at.warning
        assert any("Gradio demo at" in c.value for c in at.caption)
    finally:
        srv.shutdown()


# --- pages on the job queue (a tmp SQLite database, no worker) ------------------------------
@pytest.fixture(autouse=True)
def _own_store(store):
    """Every page test gets its own data dir (the builder lists saved architectures too)."""


def _page(at: AppTest, name: str) -> AppTest:
    at.switch_page(str(Path(MAIN).parent / "views" / f"{name}.py")).run()
    assert not at.exception, at.exception
    return at


def test_train_page_enqueues_a_run_row(store):
    from jobs import api

    from tests.helpers.motion_data import make_dataset

    # inside the data dir (the default data root)
    data = make_dataset(store / "videos", per_class=2, val_per_class=1)
    at = _page(_app(), "train")  # the builder ran first: its design is the default choice
    assert any("huey_consumer jobs.tasks" in c.value for c in at.code)  # no worker alive
    assert at.radio(key="train_src").value == "Current builder design"
    at.radio(key="train_dsrc").set_value("A folder or CSV on the server").run()
    at.text_input(key="train_path").set_value(str(store / "missing")).run()
    assert any("No such file" in e.value for e in at.error)
    at.text_input(key="train_path").set_value(str(data)).run()
    found = [m.value for m in at.success if m.value.startswith("Found")]
    assert found == ["Found 9 videos in 3 classes: 6 train, 3 validation. Validation: the val/ "
                     "folder."], found
    assert len(at.get("image")) == 3                       # a thumbnail per class
    at.number_input(key="hp_epochs").set_value(2).run()
    assert at.number_input(key="hp_lr_sgd").value == 0.01
    at.selectbox(key="hp_optimizer").set_value("adamw").run()
    assert at.number_input(key="hp_lr_adamw").value == 0.001   # its own default
    at.text_input(key="train_name").set_value("first").run()
    at.number_input(key="train_stall").set_value(30).run()
    at.button[[b.label for b in at.button].index("Enqueue run")].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    runs = api.list_runs()
    assert len(runs) == 1
    r = runs[0]
    assert (r["status"], r["name"], r["spec"]["name"]) == ("queued", "first", "ir-csn-50")
    assert r["hparams"]["epochs"] == 2 and r["dataset"] == str(data.resolve())
    assert r["stall_timeout"] == 1800 and "stall_timeout" not in r["hparams"]
    assert (r["hparams"]["optimizer"], r["hparams"]["lr"]) == ("adamw", 0.001)
    assert any(f"Queued run #{r['id']}" in s.value for s in at.success)

    _page(at, "runs")
    assert at.dataframe and "queued" in at.dataframe[0].value["status"].iloc[0]
    _page(at, "run")
    assert at.selectbox(key="run_pick").value == r["id"]
    cancel = [b for b in at.button if b.label == "Cancel"]
    assert cancel
    cancel[0].click().run()
    assert api.get_run(r["id"])["status"] == "cancelled"
    _page(at, "compare")


def test_train_form_is_kept_across_pages(store):
    """Architecture source, dataset and hyper-parameters survive a visit to another page."""
    at = _page(_app(), "train")
    at.radio(key="train_src").set_value("Preset").run()
    at.selectbox(key="train_preset").set_value("bottleneck-DG-16").run()
    assert any(c.value.startswith("bottleneck-DG-16: bottleneck blocks with a depthwise")
               and "16 blocks (3+4+6+3)" in c.value for c in at.caption)
    at.radio(key="train_dsrc").set_value("A folder or CSV on the server").run()
    at.text_input(key="train_path").set_value("datasets/mine").run()
    at.number_input(key="hp_epochs").set_value(7).run()
    at.selectbox(key="hp_optimizer").set_value("adamw").run()
    _page(at, "runs")
    _page(at, "builder")
    _page(at, "train")
    assert (at.radio(key="train_src").value, at.selectbox(key="train_preset").value) == (
        "Preset", "bottleneck-DG-16")
    assert at.radio(key="train_dsrc").value == "A folder or CSV on the server"
    assert at.text_input(key="train_path").value == "datasets/mine"
    assert (at.number_input(key="hp_epochs").value, at.selectbox(key="hp_optimizer").value) == (
        7, "adamw")


def test_run_page_shows_curves_and_error(store):
    from jobs import api

    pts = step_points((1, 2, 3), {"loss": lambda s: 2.0 / s, "lr": 0.01}) + [val_point(1, 3, 0.5)]
    rid = seed_run(pts, name="done", spec=preset("ir-csn-26").to_dict(), dataset="/x",
                   hparams={"epochs": 2}, status="failed", error="boom: out of memory",
                   best_val_video_top1=0.5)
    at = _app()
    at.query_params["run"] = str(rid)
    _page(at, "run")
    assert any("boom: out of memory" in e.value for e in at.error)
    assert [b for b in at.button if b.label == "Retry"]
    assert len(at.get("plotly_chart")) == 3  # loss, accuracy, learning rate
    assert {m.label: m.value for m in at.metric}["best val video@1"] == "50.0 %"
    _page(at, "compare")
    assert len(at.get("plotly_chart")) >= 2  # Figures 6 and 7
    assert api.get_run(rid)["status"] == "failed"


def test_train_page_generates_a_synthetic_dataset_and_enqueues_a_preset(store):
    from jobs import api

    at = _page(_app(), "train")
    at.radio(key="train_src").set_value("Preset").run()
    at.selectbox(key="train_preset").set_value("ip-csn-26").run()
    at.number_input(key="synth_n").set_value(4).run()
    at.number_input(key="synth_frames").set_value(16).run()
    assert [b for b in at.button if b.label == "Enqueue run"][0].proto.disabled  # no data yet
    [b for b in at.button if b.label == "Generate"][0].click().run(timeout=120)
    assert not at.exception and not at.error, [e.value for e in at.error]
    out = store / "datasets" / "synth-4-s0-64px-16f"
    assert (out / "classes.txt").exists() and list((out / "train").rglob("*.mp4"))
    assert any("Ready" in s.value for s in at.success)
    [b for b in at.button if b.label == "Enqueue run"][0].click().run()
    (r,) = api.list_runs()
    assert r["spec"]["name"] == "ip-csn-26" and r["dataset"] == str(out)


def test_layer_table_and_measure_on_this_machine():
    from backend.csn import count

    at = _app()
    at.selectbox(key="bld_preset").set_value("ir-csn-26").run()
    at.number_input(key="bld_height").set_value(64).run()
    at.number_input(key="bld_width").set_value(64).run()
    spec = preset("ir-csn-26", height=64, width=64)
    table = at.dataframe[0].value
    assert len(table) == len(count(spec).layers) + 1          # + the totals row
    assert table["layer"].iloc[-1] == "total"
    assert table["params"].iloc[-1] == count(spec).totals.params
    from backend.profile import memory_model
    assert abs(table["activations (MiB/clip)"].iloc[-1] * 2**20
               - memory_model(spec, 1).activation_bytes) < 1
    [b for b in at.button if b.label == "Measure"][0].click().run(timeout=120)
    assert not at.exception and not at.error
    ms = {m.label: m.value for m in at.metric}["Forward (best)"]
    assert ms.endswith(" ms") and float(ms.split()[0]) > 0
    assert any("FLOPs do not predict" in i.value for i in at.info)


def test_saved_architecture_is_offered_on_train_page(store):
    from jobs import api

    at = _app()
    at.selectbox(key="bld_preset").set_value("bottleneck-DG-8").run()
    at.text_input(key="bld_name").set_value("my-dg").run()
    save = [b for b in at.button if b.label == "Save architecture"][0]
    save.click().run()
    assert any("Saved architecture 'my-dg'" in s.value for s in at.success)
    (a,) = api.list_architectures()
    assert a["name"] == "my-dg" and a["spec"]["stages"][0]["pw_groups"] == 2
    at.selectbox(key="bld_preset").set_value("resnet3d-18").run()
    at.selectbox(key="builder_saved").set_value("my-dg").run()  # load it back into the builder
    assert at.selectbox(key="bld_s0_block").value == "bottleneck-DG"
    assert at.number_input(key="bld_s0_pw_groups").value == 2
    _page(at, "train")
    at.radio(key="train_src").set_value("Saved architecture").run()
    assert at.selectbox(key="train_saved").value == "my-dg"


def test_run_page_elapsed_counts_every_attempt_and_exports_the_model(store):
    """A retried run's elapsed time is the sum over its attempts; a finished run's model is
    exported to ONNX from the page and checked against PyTorch."""
    from datetime import timedelta

    import torch

    from backend.csn import ArchSpec, build_model
    from db import Run, utcnow, write
    from jobs import api
    from tests.helpers.motion_data import TINY_SPEC

    now = utcnow()
    rid = seed_run(name="twice", spec=preset("ir-csn-26").to_dict(), dataset="/x",
                   status="failed", started_at=now - timedelta(minutes=10),
                   finished_at=now - timedelta(minutes=8), attempts=1)
    assert api.retry_run(rid)
    assert api.get_run(rid)["prior_s"] == pytest.approx(120, abs=1)

    def second_attempt(s):
        r = s.get(Run, rid)
        r.status, r.started_at, r.attempts = "running", utcnow() - timedelta(seconds=60), 2
    write(second_attempt)
    at = _app()
    at.query_params["run"] = str(rid)
    _page(at, "run")
    elapsed = next(m for m in at.metric if m.label == "elapsed")
    assert elapsed.value.startswith("3 min 0"), elapsed.value     # 2 min + 1 min, not 1 min

    out = store / "runs" / "done"
    (out / "checkpoints").mkdir(parents=True)
    spec = ArchSpec.from_dict(dict(TINY_SPEC, num_classes=3, frames=8, height=32, width=32))
    ck = out / "checkpoints" / "epoch_0001.pt"
    torch.save({"format": "csn-explorer/1", "model": build_model(spec).state_dict(),
                "spec": spec.to_dict(), "classes": ["a", "b", "c"],
                "config": {"frames": 8, "rate": 2, "size": 32}}, ck)
    did = seed_run(checkpoints=[(1, ck)], name="done", spec=spec.to_dict(), dataset="/x",
                   status="succeeded", output_dir=str(out))
    _page(at, "run")
    at.selectbox(key="run_pick").set_value(did).run()
    at.radio(key="export_fmt").set_value("onnx").run()
    at.button(key="export_go").click().run(timeout=180)
    assert not at.exception
    msg = [s.value for s in at.success if "max |export - torch|" in s.value]
    assert msg and "onnx" in msg[0], [e.value for e in at.error]
    assert (out / "exports" / "epoch_0001.onnx").stat().st_size > 1000
