"""Typed server paths: datasets and checkpoints only from the allowed roots; refusals and data
errors reveal nothing about files (the Train page, the job API, the demo's checkpoint loader)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.data.datasets import DatasetError, read_classes, read_csv
from backend.paths import PathRefused, check_checkpoint, check_dataset, data_roots, model_roots

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
PROBES = ("../../etc/passwd", "/etc/shadow", "/etc/no-such-file-here", "../../../no/such/dir")
SECRET = "root:x:0:0:SECRET-LINE"


def _refusal(check, typed: str) -> str:
    with pytest.raises(PathRefused) as e:
        check(typed)
    return str(e.value)


def test_paths_outside_the_roots_are_refused_alike(store, tmp_path):
    (tmp_path / "outside.txt").write_text(SECRET)
    (store / "escape").symlink_to(tmp_path)                  # a link out of the root
    for check in (check_dataset, check_checkpoint):
        msgs = {_refusal(check, p) for p in (*PROBES, str(tmp_path / "outside.txt"), "escape/outside.txt")}
        assert len(msgs) == 1, msgs        # existing or not, readable or not: the same answer
        (msg,) = msgs
        assert "refused" in msg and "SECRET" not in msg and "/etc" not in msg and "No such" not in msg
    assert data_roots() == [store.resolve(), Path(MAIN).parent.parent / "data"]
    assert check_dataset("datasets/x") == store.resolve() / "datasets" / "x"   # relative: first root
    assert check_checkpoint(str(model_roots()[-1] / "motion_csn.pt")).name == "motion_csn.pt"


def test_configured_roots(store, tmp_path, monkeypatch):
    other = tmp_path / "videos"
    other.mkdir()
    monkeypatch.setenv("CSN_DATA_ROOTS", os.pathsep.join([str(other), str(store)]))
    assert check_dataset(str(other / "a")) == other.resolve() / "a"
    assert check_dataset("b") == other.resolve() / "b"
    assert "refused" in _refusal(check_dataset, "/etc/passwd")


def test_data_errors_do_not_quote_the_file(tmp_path):
    bad = tmp_path / "list.csv"
    bad.write_text(f"{SECRET},more,cols\nx\n")
    for text in (f"{SECRET},more,cols\n",                  # header matches nothing
                 f"path,label\n{SECRET}\n",                  # a short row
                 f"path,label\na.mp4,{SECRET}\n"):           # an unknown label
        bad.write_text(text)
        with pytest.raises(DatasetError) as e:
            read_csv(bad, classes=["a", "b"])
        assert "SECRET" not in str(e.value), str(e.value)
    bad.write_bytes(b"\xff\xfe" + SECRET.encode("utf-16-le"))
    with pytest.raises(DatasetError, match="not a UTF-8 CSV") as e:
        read_csv(bad)
    (tmp_path / "classes.txt").write_text(f"{SECRET}\n{SECRET}\n")
    with pytest.raises(DatasetError, match="duplicate") as e:
        read_classes(tmp_path / "classes.txt")
    assert "SECRET" not in str(e.value)


def test_train_page_and_job_api_refuse_typed_paths(store):
    from streamlit.testing.v1 import AppTest

    from jobs import api

    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    at.switch_page(str(Path(MAIN).parent / "views" / "train.py")).run()
    at.radio(key="train_dsrc").set_value("A folder or CSV on the server").run()
    shown = set()
    for typed in PROBES:
        at.text_input(key="train_path").set_value(typed).run()
        assert not at.exception
        errs = [e.value for e in at.error]
        assert len(errs) == 1 and "refused" in errs[0], errs
        shown.add(errs[0])
        assert [b for b in at.button if b.label == "Enqueue run"][0].proto.disabled
    assert len(shown) == 1 and not {"passwd", "shadow", "SECRET"} & set(shown.pop().split())
    with pytest.raises(PathRefused):
        api.enqueue_run({"name": "x"}, "../../etc/passwd", {})
    assert api.list_runs() == []                             # nothing was created
    (store / "videos").mkdir()
    at.text_input(key="train_path").set_value("videos").run()   # relative to the data dir
    # accepted, and the preview says why the trainer could not use an empty folder
    errs = [e.value for e in at.error]
    assert len(errs) == 1 and errs[0].startswith(
        f"The trainer cannot use this dataset: no training videos found in {store.resolve()}"
        "/videos (looked for "), errs


def test_demo_checkpoint_loader_refuses_typed_paths(store):
    from app.demo import Registry

    reg = Registry()
    msgs = set()
    for typed in PROBES:
        with pytest.raises(PathRefused) as e:
            reg.import_path(typed)
        msgs.add(str(e.value))
    assert len(msgs) == 1 and "SECRET" not in msgs.pop()
    with pytest.raises(FileNotFoundError):                      # inside the roots: may say so
        reg.import_path("models/none.pt")
    assert not any(n.startswith("imported") for n in reg.models)


def test_relative_paths_from_the_working_dir_then_each_root(store, tmp_path, monkeypatch):
    """`--out data/motion` typed as written (from the working directory), a name under any
    root, and an absolute path inside a root are all accepted; what does not exist resolves
    under the first root; the repository's data/ is a default root."""
    from backend.paths import REPO

    other = tmp_path / "data"
    (other / "motion").mkdir(parents=True)
    (store / "here").mkdir()
    monkeypatch.setenv("CSN_DATA_ROOTS", os.pathsep.join([str(store), str(other)]))
    monkeypatch.chdir(tmp_path)
    assert check_dataset("data/motion") == (other / "motion").resolve()       # from the cwd
    assert check_dataset("motion") == (other / "motion").resolve()            # second root
    assert check_dataset("here") == (store / "here").resolve()                # first root
    assert check_dataset("missing") == store.resolve() / "missing"
    assert "refused" in _refusal(check_dataset, "../outside")
    monkeypatch.delenv("CSN_DATA_ROOTS")
    assert REPO / "data" in data_roots()
    assert check_dataset(str(REPO / "data" / "motion")) == REPO / "data" / "motion"


def test_one_data_dir_made_only_by_what_writes_there(tmp_path, monkeypatch):
    import db
    from backend.paths import data_dir

    var = tmp_path / "fresh" / "var"
    monkeypatch.setenv("CSN_DATA_DIR", str(var))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert data_dir() == var and not var.exists()        # the roots and readers make nothing
    assert data_roots()[0] == var and not var.exists()
    assert db.database_url() == f"sqlite:///{var / 'csn.db'}" and var.is_dir()
    assert data_dir(create=True) == var
