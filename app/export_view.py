"""Run detail's model export: a finished run's newest checkpoint to TorchScript or ONNX, run as
``python -m backend.export ... --check`` (the export's output compared with PyTorch's)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
TIMEOUT_S = 900


def export_checked(ckpt: Path, fmt: str, out: Path) -> tuple[bool, str]:
    """Run the export CLI with ``--check``; (ok, its report or the reason it failed)."""
    cmd = [sys.executable, "-m", "backend.export", str(ckpt), "--format", fmt, "--out", str(out),
           "--check"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"the export took longer than {TIMEOUT_S} s"
    lines = [ln for ln in (p.stdout + p.stderr).splitlines()
             if ln.startswith(("wrote", "max |", "error"))]
    return p.returncode == 0, "; ".join(lines) or f"exit status {p.returncode}"


def export_section(r: dict | None) -> None:
    """An expander offering the export of a succeeded run's newest checkpoint."""
    if r is None or r["status"] != "succeeded":
        return
    cks = [c for c in r.get("checkpoints") or [] if Path(c["path"]).is_file()]
    if not cks or not r.get("output_dir"):
        return
    ckpt = Path(cks[-1]["path"])
    with st.expander("Export the model (TorchScript / ONNX)"):
        fmt = st.radio("Format", list(SUFFIX), horizontal=True, key="export_fmt")
        out = Path(r["output_dir"]) / "exports" / f"{ckpt.stem}{SUFFIX[fmt]}"
        st.caption(f"Exports {ckpt.name} (epoch {cks[-1]['epoch']}) to `{out}` and checks that "
                   "it computes what the PyTorch model computes on a random clip.")
        done = st.session_state.setdefault("run_exports", {})
        if st.button("Export and check", icon=":material/upload_file:", key="export_go"):
            with st.spinner(f"Exporting to {fmt} and checking…"):
                done[str(out)] = export_checked(ckpt, fmt, out)
        if str(out) in done:
            ok, msg = done[str(out)]
            (st.success if ok else st.error)(msg)
            if ok and out.is_file():
                st.download_button(f"Download {out.name}", out.read_bytes, out.name,
                                   "application/octet-stream", key="export_dl",
                                   on_click="ignore")
