"""backend.export: TorchScript and ONNX exports compute what the PyTorch model computes."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend.csn import build_model, preset
from backend.export import export, main, run_export


def _ckpt(tmp_path: Path, **kw) -> tuple[Path, torch.nn.Module]:
    spec = preset("ip-csn-26", num_classes=5, frames=8, height=32, width=32, **kw)
    model = build_model(spec).eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    p = tmp_path / "m.pt"
    torch.save({"format": "csn-explorer/1", "model": model.state_dict(), "spec": spec.to_dict(),
                "classes": list("abcde"), "config": {"frames": 8, "size": 32}}, p)
    return p, model


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_cli_matches_torch_on_other_shapes(tmp_path: Path, fmt: str, capsys):
    ck, model = _ckpt(tmp_path)
    out = tmp_path / f"m.{fmt}"
    assert main([str(ck), "--format", fmt, "--out", str(out), "--check"]) == 0
    assert "max |export - torch|" in capsys.readouterr().out
    x = torch.randn(3, 3, 16, 48, 48)  # other batch / frames / size than traced
    with torch.no_grad():
        torch.testing.assert_close(run_export(out, fmt, x), model(x), rtol=1e-4, atol=1e-5)


def test_conv_head_torchscript(tmp_path: Path):
    _, model = _ckpt(tmp_path, head="conv", head_pool=(1, 1, 1))
    x = torch.randn(1, 3, 8, 32, 32)
    out = export(model, x, tmp_path / "c.ts", "torchscript")
    with torch.no_grad():
        torch.testing.assert_close(run_export(out, "torchscript", x), model(x))


def test_export_bad_checkpoint(tmp_path: Path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(bad), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "error:" in capsys.readouterr().err
