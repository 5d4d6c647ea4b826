"""ONNX export of a trained detector: the module to trace, the trace, the metadata, onnxsim, and
the onnxruntime check that the graph reproduces PyTorch within ``ATOL + RTOL * |value|``."""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from utils.config import ConfigError
from utils.infer.load import load_fused

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


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the optional package 'onnx': pip install onnx onnxruntime") from None
    return onnx


def export_module(weights: str | Path, raw: bool) -> tuple[nn.Module, nn.Module, dict]:
    """``(module to trace, fused model, checkpoint)``: decoded predictions or raw levels."""
    model, ckpt = load_fused(weights)
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
    onnx = require_onnx()
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
    onnx = require_onnx()
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
