"""app.demo: a launched Gradio server driven with gradio_client on real generated videos."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import torch

from app.demo import Registry, discover_models, make_examples
from app.formatting import fmt_count
from backend.csn import build_model, count, preset
from backend.data.encode import write_video
from backend.synth import CLASSES, make_scene, render

ROOT = Path(__file__).resolve().parents[1]


def tiny_checkpoint(path: Path, name: str = "ir-csn-26", frames: int = 8, size: int = 64) -> Path:
    """Random weights (seeded) of a preset, as a csn-explorer/1 checkpoint."""
    spec = preset(name, num_classes=len(CLASSES), frames=frames, height=size, width=size)
    torch.manual_seed(0)
    torch.save({"format": "csn-explorer/1", "model": build_model(spec).state_dict(), "spec": spec.to_dict(),
                "classes": list(CLASSES), "config": {"frames": frames, "rate": 2, "size": size}}, path)
    return path


def test_examples_and_models(tmp_path: Path, store):
    paths = make_examples(tmp_path)
    assert {Path(p).suffix for p in paths} == {".mp4", ".webm", ".avi", ".mkv"}
    for p in paths:
        with av.open(p) as c:
            assert sum(1 for _ in c.decode(video=0)) == 32
    ck = tiny_checkpoint(tmp_path / "t.pt")
    models = discover_models([str(ck)])
    assert models["checkpoint: t.pt"].path == str(ck.resolve())
    assert "imported: late.pt" not in models
    (tmp_path / "var" / "models").mkdir(parents=True)
    tiny_checkpoint(tmp_path / "var" / "models" / "late.pt")   # e.g. backend.convert --out
    reg = Registry([str(ck)])
    assert "imported: late.pt" in reg.refresh()                # found without a restart
    assert reg.import_path("models/late.pt") == "imported: late.pt"
    assert "loaded by path" in reg.models["imported: late.pt"].origin


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    ck = tiny_checkpoint(d / "tiny.pt")
    # 5.3 G multiply-adds per clip: a "big" model for the demo (Stop, defaults) that still
    # runs a forward pass in about a second
    big = tiny_checkpoint(d / "big.pt", "ir-csn-50", frames=16, size=112)
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_TEMP_DIR=str(d / "uploads"), PYTHONPATH=str(ROOT), CSN_DATA_DIR=str(d / "var"))
    env.pop("DATABASE_URL", None)
    log = open(d / "server.log", "wb")
    p = subprocess.Popen([sys.executable, "-m", "app.demo", "--port", str(port), "--checkpoint", str(ck),
                          "--checkpoint", str(big),
                          "--cache-dir", str(d / "cache"), "--max-mb", "1", "--threads", "1"],
                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            if p.poll() is not None:
                raise RuntimeError((d / "server.log").read_text())
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError("demo did not start: " + (d / "server.log").read_text())
        from gradio_client import Client

        client = Client(url, verbose=False, download_files=str(d / "downloads"))
        yield client, d, url
    finally:
        p.terminate()
        p.wait(timeout=30)
        log.close()


def _analyze(client, path: Path, method: str = "Grad-CAM (stage)", clips: int = 2, crops: str = "1"):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), "checkpoint: tiny.pt", clips, crops, method, "conv3",
                          api_name="/analyze")


def _video(d: Path, name: str, label: str = "move-right", frames: int = 24) -> Path:
    return write_video(d / name, render(make_scene(label, (3,), size=64, frames=frames)), fps=15)


@pytest.mark.slow
@pytest.mark.parametrize("ext,method", [("mp4", "Grad-CAM (stage)"), ("webm", "Saliency"),
                                        ("avi", "Frame ablation"), ("mkv", "Integrated Gradients"),
                                        ("gif", "Grad-CAM (stage)")])
def test_good_videos_give_labels_and_overlay(server, ext, method):
    client, d, _ = server
    label, info, video, gallery, plot = _analyze(client, _video(d, f"good.{ext}"), method)
    assert label["label"] in CLASSES and len(label["confidences"]) == 5
    assert abs(sum(c["confidence"] for c in label["confidences"]) - 1) < 0.5
    assert "Top-5 in" in info and "explanation" in info
    vpath = video["video"] if isinstance(video, dict) else video
    with av.open(vpath) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) == 8
    assert len(gallery) == 4 and plot["type"] == "plotly"
    # uploads stay in the configured temp dir
    assert any((d / "uploads").rglob(f"good.{ext}"))


def _expect_error(client, path: Path, pattern: str) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=pattern):
        _analyze(client, path)


@pytest.mark.slow
def test_bad_inputs_give_messages_and_server_keeps_serving(server):
    client, d, url = server
    good = _video(d, "ok.mp4")
    (d / "notes.mp4").write_text("this is not a video")
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])
    with av.open(str(d / "audio.m4a"), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for _ in range(20):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate = 16000
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    _video(d, "one.mp4", frames=1)
    cases = [("notes.mp4", "not a video"), ("truncated.mp4", "damaged or truncated"),
             ("audio.m4a", "no video stream"), ("one.mp4", "only 1 decodable frame")]
    for name, pattern in cases:
        _expect_error(client, d / name, pattern)
        label, *_ = _analyze(client, good, "Saliency", clips=1)   # and the next one still works
        assert label["label"] in CLASSES
    big = d / "big.mp4"
    big.write_bytes(os.urandom(1_300_000))
    r = httpx.post(url + "gradio_api/upload", files={"files": ("big.mp4", big.open("rb"), "video/mp4")})
    assert r.status_code == 413 and "maximum allowed size" in r.text
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        _analyze(client, big)
    # a long video: only the clips needed are decoded
    long = write_video(d / "long.mp4", np.repeat(render(make_scene("move-up", (5,), size=64, frames=30)), 40, 0),
                       fps=30, gop=30)
    t0 = time.perf_counter()
    label, info, *_ = _analyze(client, long, "Saliency", clips=1)
    assert label["label"] in CLASSES and time.perf_counter() - t0 < 60


SHIPPED = ROOT / "backend" / "assets" / "motion_csn.pt"


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped model not trained yet")
def test_shipped_model_classifies_generated_clips_and_overlays(server):
    """The issue's 'done when': the shipped model names the motion of fresh generated clips
    (a seed it never saw) and the explanation comes back as an overlay video."""
    from gradio_client import handle_file

    client, d, _ = server
    right = 0
    labels = ("move-left", "rotate-cw", "zoom-in", "move-down")
    for k, want in enumerate(labels):
        clip = write_video(d / f"shipped_{k}.webm", render(make_scene(want, (424242, k), size=64, frames=32)), fps=15)
        label, info, video, gallery, plot = client.predict(
            handle_file(str(clip)), "shipped: motion_csn", 3, "1", "Grad-CAM (stage)", "conv4", api_name="/analyze")
        right += label["label"] == want
        vpath = video["video"] if isinstance(video, dict) else video
        with av.open(vpath) as c:
            assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].frames != 1
        assert len(gallery) == 4
    assert right >= len(labels) - 1, right  # >= 90% test accuracy: at most one miss in four


@pytest.mark.slow
def test_big_model_defaults_progress_and_stop(server):
    """A big model switches the form to one clip and Grad-CAM; Stop ends a long explanation at
    its next pass (top-5 already shown), and the next request runs normally."""
    from gradio_client import handle_file

    client, d, _ = server
    card, clips, method, note = client.predict("checkpoint: big.pt", api_name="/model_card")
    assert (clips, method) == (1, "Grad-CAM (stage)") and "Big model" in note
    spec = preset("ir-csn-50", num_classes=len(CLASSES), frames=16, height=112, width=112)
    assert "What it cannot do" in card and f"{fmt_count(count(spec).totals.all_params)} parameters" in card
    clip = _video(d, "big_in.mp4", frames=40)
    job = client.submit(handle_file(str(clip)), "checkpoint: big.pt", 1, "1", "Integrated Gradients",
                        "conv4", api_name="/analyze")
    deadline = time.time() + 120
    while len(job.outputs()) < 1 and time.time() < deadline:   # the top-5 came back first
        time.sleep(0.2)
    assert job.outputs(), job.status()
    assert "explaining" in job.outputs()[0][1]
    seen = ""
    while "integrated gradients: pass" not in seen and time.time() < deadline:  # progress per pass
        seen = " ".join(str(p.desc) for p in (job.status().progress_data or []))
        time.sleep(0.1)
    assert "integrated gradients: pass 1/8" in seen, seen
    client.predict(api_name="/stop")
    label, info, video, gallery, plot = job.result(timeout=120)
    assert "Stopped" in info and video is None
    label, info, *_ = _analyze(client, _video(d, "after.mp4"), "Saliency", clips=1)
    assert label["label"] in CLASSES and "explanation" in info


def test_model_cards_say_where_a_model_came_from(tmp_path: Path):
    """Shipped (release facts), imported (conversion facts with sources), trained (its data and
    validation accuracy): each card names classes, clip, normalisation, size and limits."""
    from app.demo import ModelEntry
    from app.modelcard import model_card_markdown
    from backend.inference.predictor import Predictor

    ck = tiny_checkpoint(tmp_path / "imp.pt")
    raw = torch.load(ck, weights_only=True)
    raw["config"].update(imported_from="/somewhere/ircsn_152.pkl", layout="caffe2", model="ir-csn-152",
                         facts={"bn_eps": {"value": 1e-3, "source": "VMZ c2 spatial_bn default"}},
                         warnings=["input normalisation guessed"])
    torch.save(raw, ck)
    card = model_card_markdown(Predictor(ck), ModelEntry(str(ck), "imported checkpoint imp.pt"))
    assert "imported checkpoint imp.pt" in card and "caffe2 layout, model ir-csn-152" in card
    assert "bn_eps = 0.001 (VMZ c2 spatial_bn default)" in card and "⚠️ input normalisation guessed" in card
    assert "not measured in CSN Explorer" in card and f"Classes ({len(CLASSES)})" in card
    assert "8×64×64" in card and "What it cannot do" in card
    raw["config"] = {"frames": 8, "rate": 2, "size": 64, "data": "/data/synth-24", "epochs": 3}
    raw["metrics"] = {"val_video_top1": 0.625}
    torch.save(raw, ck)
    card = model_card_markdown(Predictor(ck), ModelEntry(str(ck), "training run #4 r, epoch 3"))
    assert "training run #4" in card and "/data/synth-24" in card and "62.5 % video@1" in card
    if SHIPPED.is_file():
        card = model_card_markdown(Predictor(SHIPPED), ModelEntry(str(SHIPPED), "shipped with CSN Explorer"))
        import json

        test = json.loads(SHIPPED.with_suffix(".json").read_text())["test"]
        assert f"Held-out accuracy:** {test['video_top1'] * 100:.1f} %" in card
        assert "generated clips of moving shapes" in card


def _value_from_api(param: dict, video: Path, choice: int = 0):
    """A value for one ``view_api()`` parameter, from what it reports and nothing else: a file
    for a file, else an allowed (enum) value, else its default."""
    from gradio_client import handle_file

    if param["python_type"]["type"] == "filepath":
        return handle_file(str(video))
    allowed = param["type"].get("enum")
    if allowed:
        return allowed[choice % len(allowed)]
    assert param["parameter_has_default"], param
    return param["parameter_default"]


@pytest.mark.slow
def test_a_client_written_from_view_api_works(server):
    """Every parameter of /analyze filled from view_api() alone (each allowed value of every
    choice tried) is accepted, and /model_card and /stop take what they report."""
    client, d, _ = server
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = api["/analyze"]["parameters"]
    crops = next(p for p in params if p["parameter_name"] == "crops")
    assert crops["python_type"]["type"] == "Literal['1', '3']"
    clip = _video(d, "api.mp4")
    for choice in range(2):           # first, then second allowed value of every choice
        kwargs = {p["parameter_name"]: _value_from_api(p, clip, choice) for p in params}
        kwargs["method_label"] = "Saliency"   # the quickest explanation
        kwargs["model_name"] = "checkpoint: tiny.pt"
        assert kwargs["model_name"] in next(p for p in params if p["parameter_name"]
                                            == "model_name")["type"]["enum"]
        label, info, *_ = client.predict(**kwargs, api_name="/analyze")
        assert label["label"] in CLASSES
        assert f"({int(kwargs['num_clips']) * int(kwargs['crops'])} clip(s)" in info
    card_params = api["/model_card"]["parameters"]
    card = client.predict(*[_value_from_api(p, clip) for p in card_params], api_name="/model_card")
    assert "What it cannot do" in card[0]
    assert api["/stop"]["parameters"] == []


def test_stop_lands_while_clips_are_decoded(tmp_path: Path, store):
    """Stop pressed after the first of ten clips is decoded ends the request there, before the
    other nine are decoded or any is classified."""
    from types import SimpleNamespace

    from app.demo import Handlers

    ck = tiny_checkpoint(tmp_path / "tiny.pt")
    h = Handlers(Registry([str(ck)]), tmp_path / "cache")
    request = SimpleNamespace(session_hash="s1")
    seen: list[str] = []

    def progress(fraction: float, desc: str = "") -> None:
        seen.append(desc)
        if desc.startswith("decoded 1/"):
            h.stop(request)                    # as the Stop button does, between two clips
    clip = _video(tmp_path, "ten.mp4", frames=48)
    outs = list(h.analyze(str(clip), "checkpoint: tiny.pt", 10, "1", "Saliency", "conv3",
                          request, progress))
    assert "Stopped" in outs[-1][1], outs[-1][1]
    assert "decoded 1/10 clip(s)" in seen and not any(
        s.startswith(("decoded 2/", "classified")) for s in seen), seen


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped model not trained yet")
def test_readme_client_example_runs(server, capsys):
    """The README's gradio_client example, run as printed (its URL and clip swapped for this
    server's and a generated one)."""
    import re

    _, d, url = server
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(from gradio_client import.*?)```", text, re.S).group(1)
    clip = _video(d, "readme.mp4", label="zoom-in")
    code = code.replace("http://127.0.0.1:7860/", url).replace('"clip.mp4"', repr(str(clip)))
    exec(compile(code, "README.md", "exec"), {})
    printed = [ln for ln in capsys.readouterr().out.splitlines() if "Top-5 in" in ln]
    assert len(printed) == 1 and printed[0].split()[0] in CLASSES, printed
