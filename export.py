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
import logging
import sys
from pathlib import Path

import torch

from utils.cli.checks import OneLineParser, int_at_least
from utils.cli.common import exit_code, log_to_terminal, round_up
from utils.infer.onnx_export import (ATOL, RTOL, ExportError, ExportMismatch, add_metadata, compare_onnxruntime,
                                     export_module, export_onnx, output_names, require_onnx, simplify)

LOGGER = logging.getLogger(__name__)


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
    require_onnx()
    s = int(model.stride.max())
    h, w = (opt.img_size * 2)[:2]
    hw = (round_up(h, s), round_up(w, s))
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
    log_to_terminal()
    # ConfigError: CheckpointError, ModelConfigError, ExportError
    return exit_code(lambda: run(opt), failures=((ExportMismatch, "error: ONNX check failed: ", 1),))


if __name__ == "__main__":
    sys.exit(main())
