"""Export a checkpoint's model to TorchScript or ONNX.

``python -m backend.export CKPT --format torchscript|onnx --out FILE [--frames T --size S]``

Both exports take (N, 3, T, S, S) normalised clips and return (N, K) logits; batch size is
dynamic (ONNX: also T, H, W for the fc head). ``--check`` compares the export's output with
the PyTorch model on a random clip.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .csn import SpecError
from .csn.clipfit import check_clip
from .inference.predictor import ModelLoadError, load_model

FORMATS = ("torchscript", "onnx")


def example_input(spec, frames: int | None = None, size: int | None = None, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, spec.in_channels, frames or spec.frames, size or spec.height, size or spec.width,
                       generator=torch.Generator().manual_seed(0))


def export(model: torch.nn.Module, x: torch.Tensor, out: str | Path, fmt: str) -> Path:
    """Write ``model`` (eval mode) traced on ``x`` to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, x, check_trace=False)
        traced.save(str(out))
    elif fmt == "onnx":
        dyn = {0: "batch"}
        if getattr(getattr(model, "spec", None), "head", "fc") == "fc":
            dyn.update({2: "frames", 3: "height", 4: "width"})
        torch.onnx.export(model, (x,), str(out), dynamo=False, input_names=["clip"], output_names=["logits"],
                          dynamic_axes={"clip": dyn, "logits": {0: "batch"}}, opset_version=17)
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return out


def run_export(path: str | Path, fmt: str, x: torch.Tensor) -> torch.Tensor:
    """Run an exported file on ``x`` (torch.jit / onnxruntime) and return logits."""
    if fmt == "torchscript":
        m = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return m(x)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, torch.get_num_threads())
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {"clip": x.numpy()})[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend.export", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--format", choices=FORMATS, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int)
    ap.add_argument("--size", type=int)
    ap.add_argument("--check", action="store_true", help="compare outputs with the PyTorch model")
    a = ap.parse_args(argv)
    try:
        model, spec, classes, ck = load_model(a.checkpoint)
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = ck.get("config") or {}
    x = example_input(spec, a.frames or cfg.get("frames"), a.size or cfg.get("size"))
    try:
        check_clip(spec, x.shape[2], x.shape[3])       # a conv head's window must fit the clip
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = export(model, x, a.out, a.format)
    print(f"wrote {out} ({a.format}, input {tuple(x.shape)}, {len(classes)} classes)")
    if a.check:
        with torch.no_grad():
            ref = model(x)
        err = (run_export(out, a.format, x) - ref).abs().max().item()
        print(f"max |export - torch| = {err:.3g}")
        if err > 1e-3 * max(1.0, ref.abs().max().item()):
            print("error: exported model disagrees with PyTorch", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    from backend.cli import run_cli
    raise SystemExit(run_cli(main))
