"""The demo's timeline (app.demo_timeline) with the shipped model on a two-motion video."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.demo import timeline as demo_timeline
from app.demo import Handlers, Registry, build_demo
from test_demo import server  # noqa: F401  (the fixture: a launched demo)
from test_predict import CHANGE_S, FIRST, SECOND, two_motions  # noqa: F401  (the fixture)

SHIPPED_NAME = "shipped: motion_csn"


@pytest.fixture(scope="module")
def handlers(tmp_path_factory) -> Handlers:
    return Handlers(Registry(), tmp_path_factory.mktemp("cache"))


def test_a_short_video_has_no_timeline(handlers, tmp_path):
    from backend.data.encode import write_video
    from backend.synth import make_scene, render
    short = write_video(tmp_path / "short.mp4", render(make_scene(FIRST, (1,), size=64, frames=24)), fps=15)
    fig, note, choices = demo_timeline.timeline(handlers, str(short), SHIPPED_NAME)
    assert fig is None and "one 2 s window" in note and choices["choices"] == []


def test_the_demo_wires_timeline_and_window_explanation(tmp_path):
    demo = build_demo(Registry(), cache=tmp_path)
    api_names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert {"analyze", "timeline", "explain_window"} <= api_names


@pytest.mark.slow
def test_the_served_demo_answers_timeline_and_window_requests(server, two_motions):  # noqa: F811
    from gradio_client import handle_file
    client, _, _ = server
    video = handle_file(str(two_motions))
    plot, note, window = client.predict(video, SHIPPED_NAME, api_name="/timeline")
    assert "7 windows, 120 frames decoded once" in note and window["value"] == 0.0
    windows = window["choices"]
    assert [s for _, s in windows] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]   # 2 s every 1 s
    assert all(FIRST in label for label, s in windows if s + 2 <= CHANGE_S)
    assert all(SECOND in label for label, s in windows if s >= CHANGE_S)
    traces = json.loads(plot["plot"])["data"]
    assert {FIRST, SECOND} <= {t["name"] for t in traces} and len(traces) == demo_timeline.TOP_CLASSES
    overlay, gallery, chart, info = client.predict(video, SHIPPED_NAME, 5.0, "Saliency", "conv4",
                                                   api_name="/explain_window")
    assert Path(overlay["video"] if isinstance(overlay, dict) else overlay).is_file()
    assert SECOND in info and gallery
