"""Export a checkpoint to ONNX (Conv+BN fused, FP32, CPU) and check it with onnxruntime.

    python export.py --weights best.pt --img-size 640                # -> best.onnx, decoded output
    python export.py --weights best.pt --dynamic --output model.onnx  # batch size left symbolic
    python export.py --weights best.pt --no-decode                    # raw head levels
    python export.py --weights best.pt --include darknet --output yolo  # -> yolo.cfg + yolo.weights

Graph input ``images``: float32 ``[B, 3, H, W]`` RGB scaled to 0..1 (letterboxed as detect.py
does). Outputs:

* default: ``pred`` float32 ``[B, N, nc + 5]`` = ``(cx, cy, w, h, obj, cls_0 ...)``, boxes in input
  pixels, scores already sigmoid-ed (the input of :func:`utils.ops.nms.non_max_suppression`);
* ``--no-decode``: one ``raw_s{stride}`` output per level, ``[B, na, H/s, W/s, nc + 5]`` logits
  (decode them yourself with the anchors and strides stored in the model metadata).

The model metadata holds ``names``, ``stride``, ``anchors`` (input pixels), ``decode`` and
``output``. ``onnx`` is needed to export; ``onnxruntime`` (optional) runs the check: the ONNX
outputs must equal PyTorch's within ``1e-4 + 1e-5 * |value|`` (decoded sizes reach ~2,000 px,
where one float32 step is 1.2e-4); the maximum absolute difference is printed.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from utils.train.checkpoint import CheckpointError, load_model
from utils.cli.checks import OneLineParser, int_at_least
from utils.config import ConfigError

LOGGER = logging.getLogger(__name__)
ATOL, RTOL = 1e-4, 1e-5


class ExportError(ConfigError):
    """Export cannot run (missing optional package, bad option) or its check failed."""


class ExportMismatch(RuntimeError):
    """The exported graph does not reproduce PyTorch's outputs."""


class DecodedOutput(nn.Module):
    """Eval-mode model -> only its decoded ``pred [B, N, nc + 5]`` (drops the raw levels)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    ap = OneLineParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="checkpoint written by train.py")
    ap.add_argument("--img-size", type=int_at_least(1), nargs="+", default=[640], help="H W, or one size for both")
    ap.add_argument("--batch-size", type=int_at_least(1), default=1, help="batch size of the traced input")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    ap.add_argument("--dynamic", action="store_true", help="symbolic batch dimension")
    ap.add_argument("--no-decode", action="store_true", help="export the raw head levels")
    ap.add_argument("--simplify", action="store_true", help="run onnxsim (ignored when not installed)")
    ap.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    ap.add_argument("--output", help="ONNX file (default: the weights path with .onnx); darknet: the STEM "
                    "of STEM.cfg + STEM.weights (default: the weights path without suffix)")
    ap.add_argument("--include", nargs="+", choices=("onnx", "darknet"), default=["onnx"],
                    help="formats to write (darknet: cfg + weights for models with a darknet equivalent)")
    return ap.parse_args(argv)


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the optional package 'onnx': pip install onnx onnxruntime") from None
    return onnx


def export_module(weights: str | Path, raw: bool) -> tuple[nn.Module, nn.Module, dict]:
    """``(module to trace, fused model, checkpoint)``: decoded predictions or raw levels."""
    try:
        model, ckpt = load_model(weights, device="cpu")
    except (KeyError, RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{weights}: checkpoint does not hold a usable model ({type(e).__name__})") from None
    model.fuse().eval()
    model.detect.export_raw = raw
    return (model if raw else DecodedOutput(model)).eval(), model, ckpt


def output_names(model: nn.Module, raw: bool) -> list[str]:
    return [f"raw_s{int(s)}" for s in model.stride.tolist()] if raw else ["pred"]


def export_onnx(module: nn.Module, x: torch.Tensor, path: Path, opset: int, dynamic: bool,
                outputs: list[str]) -> None:
    """Trace ``module`` on ``x`` with the TorchScript-based exporter (no onnxscript needed)."""
    axes = {name: {0: "batch"} for name in ["images", *outputs]} if dynamic else None
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=outputs, dynamic_axes=axes, do_constant_folding=True)


def add_metadata(path: Path, model: nn.Module, ckpt: dict, raw: bool) -> None:
    """Check the graph with ``onnx.checker`` and store names/stride/anchors in its metadata."""
    onnx = _require_onnx()
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    nc = model.nc
    names = ckpt.get("names") if isinstance(ckpt.get("names"), (list, tuple)) else [str(i) for i in range(nc)]
    meta = {"names": json.dumps(list(names)), "stride": json.dumps(model.stride.tolist()),
            "anchors": json.dumps(model.detect.anchors.tolist()), "decode": model.detect.decode,
            "output": "raw levels [B, na, H, W, nc+5] logits" if raw else "pred [B, N, nc+5] cx,cy,w,h,obj,cls"}
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(path))


def simplify(path: Path) -> bool:
    """Run onnxsim in place when installed; returns whether it ran."""
    try:
        import onnxsim
    except ImportError:
        LOGGER.warning("warning: onnxsim is not installed; --simplify ignored (pip install onnxsim)")
        return False
    onnx = _require_onnx()
    proto, ok = onnxsim.simplify(onnx.load(str(path)))
    if not ok:
        LOGGER.warning("warning: onnxsim could not validate the simplified model; keeping the original")
        return False
    onnx.save(proto, str(path))
    return True


def compare_onnxruntime(path: Path, module: nn.Module, x: torch.Tensor) -> float | None:
    """Max abs difference ONNX vs PyTorch on ``x`` over all outputs; None if onnxruntime is absent.

    Raises :class:`ExportMismatch` when a value differs by more than ``ATOL + RTOL * |value|``.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        LOGGER.warning("warning: onnxruntime is not installed; check skipped (pip install onnxruntime)")
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref = module(x)
    ref = [r.numpy() for r in (ref if isinstance(ref, (list, tuple)) else [ref])]
    worst = 0.0
    for name, a, b in zip(session.get_outputs(), got, ref):
        if a.shape != b.shape:
            raise ExportMismatch(f"{path}: output {name.name} has shape {a.shape}, PyTorch gives {b.shape}")
        diff = np.abs(a - b)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        if not np.all(diff <= ATOL + RTOL * np.abs(b)):
            raise ExportMismatch(f"{path}: output {name.name} differs from PyTorch by up to {diff.max():.3g} "
                              f"(allowed {ATOL} + {RTOL} x |value|)")
    return worst


def run(opt: argparse.Namespace) -> Path:
    if opt.opset < 17:
        raise ExportError(f"--opset {opt.opset}: 17 or newer is required")
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as max_opset
    if opt.opset > max_opset:
        raise ExportError(f"--opset {opt.opset}: this torch exports opsets 17-{max_opset}")
    if len(opt.img_size) not in (1, 2) or opt.batch_size < 1:
        raise ExportError("--img-size takes one or two sizes (H W) and --batch-size must be >= 1")
    if "darknet" in opt.include:
        from utils.darknet.io import export_checkpoint
        paths = export_checkpoint(opt.weights, opt.output if opt.include == ["darknet"] else None, opt.img_size[0])
        LOGGER.info("exported %s + %s", *paths)
        if opt.include == ["darknet"]:
            return paths[0]
    module, model, ckpt = export_module(opt.weights, opt.no_decode)  # the user's file is checked first
    _require_onnx()
    s = int(model.stride.max())
    h, w = (opt.img_size * 2)[:2]
    hw = (-(-h // s) * s, -(-w // s) * s)
    if hw != (h, w):
        LOGGER.warning("warning: image size %dx%d rounded up to %dx%d (multiple of stride %d)", h, w, *hw, s)
    path = Path(opt.output) if opt.output else Path(opt.weights).with_suffix(".onnx")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"--output {path}: cannot create its folder ({e.strerror or e})") from None
    names = output_names(model, opt.no_decode)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(opt.batch_size, 3, *hw, generator=gen)
    export_onnx(module, x, path, opt.opset, opt.dynamic, names)
    add_metadata(path, model, ckpt, opt.no_decode)
    if opt.simplify:
        simplify(path)
    LOGGER.info("exported %s (opset %d, input images [%s, 3, %d, %d], outputs %s)", path, opt.opset,
                "batch" if opt.dynamic else opt.batch_size, *hw, ", ".join(names))
    if not opt.no_check:
        batches = [opt.batch_size] + ([opt.batch_size + 1] if opt.dynamic else [])
        for b in batches:
            diff = compare_onnxruntime(path, module, torch.rand(b, 3, *hw, generator=gen))
            if diff is not None:
                LOGGER.info("onnxruntime check, batch %d: max abs diff %.3g (allowed %g + %g x |value|)",
                            b, diff, ATOL, RTOL)
    return path


def main(argv: list[str] | None = None) -> int:
    opt = parse_opt(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(opt)
    except ConfigError as e:  # CheckpointError, ModelConfigError, ExportError
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ExportMismatch as e:
        print(f"error: ONNX check failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
