"""The demo's timeline (app.demo_timeline) with the shipped model on a two-motion video."""
from __future__ import annotations

from pathlib import Path

import pytest

from app import demo_timeline
from app.demo import Handlers, Registry, build_demo
from test_predict import CHANGE_S, FIRST, SECOND, two_motions  # noqa: F401  (the fixture)

SHIPPED_NAME = "shipped: motion_csn"


@pytest.fixture(scope="module")
def handlers(tmp_path_factory) -> Handlers:
    return Handlers(Registry(), tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
def test_timeline_and_explaining_a_window(handlers, two_motions):  # noqa: F811
    fig, note, choices = demo_timeline.timeline(handlers, str(two_motions), SHIPPED_NAME)
    assert "frames decoded once" in note
    windows = choices["choices"]
    starts = [s for _, s in windows]
    assert starts == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]      # 2 s windows every 1 s
    assert all(FIRST in label for label, s in windows if s + 2 <= CHANGE_S)
    assert all(SECOND in label for label, s in windows if s >= CHANGE_S)
    names = {trace.name for trace in fig.data}
    assert {FIRST, SECOND} <= names and len(fig.data) == demo_timeline.TOP_CLASSES
    video, gallery, chart, info = demo_timeline.explain_window(
        handlers, str(two_motions), SHIPPED_NAME, 5.0, "Saliency", "conv4")
    assert Path(video).is_file() and gallery and SECOND in info and "5.0 s" in info


def test_a_short_video_has_no_timeline(handlers, tmp_path):
    from backend.encode import write_video
    from backend.synth import make_scene, render
    short = write_video(tmp_path / "short.mp4", render(make_scene(FIRST, (1,), size=64, frames=24)), fps=15)
    fig, note, choices = demo_timeline.timeline(handlers, str(short), SHIPPED_NAME)
    assert fig is None and "one 2 s window" in note and choices["choices"] == []


def test_the_demo_wires_timeline_and_window_explanation(tmp_path):
    demo = build_demo(Registry(), cache=tmp_path)
    api_names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert {"analyze", "timeline", "explain_window"} <= api_names
