"""Darknet cfg/weights <-> checkpoints of this framework.

    python -m utils.darknet.io --cfg yolov4.cfg --weights yolov4.weights --out yolov4.pt
    python -m utils.darknet.io --cfg yolov4.cfg --out yolov4_random.pt          # randomly initialised

The checkpoint is an ordinary one (``torch.load(..., weights_only=True)``) for ``detect.py``,
``test.py``, ``train.py --weights`` and ``export.py``. ``export.py --include darknet`` writes a
model back as ``STEM.cfg`` + ``STEM.weights`` (:func:`write_darknet`). ``train.py --weights
X.weights`` reads ``X.cfg`` next to it (:func:`weights_checkpoint`).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from models.classifier import build_model
from utils.config import ConfigError
from utils.darknet.build import ConvSpec, translate
from utils.darknet.cfg import DarknetError, read_cfg, write_cfg_text
from utils.darknet.export import export_sections
from utils.darknet.weights import DEFAULT_HEADER, read_weights, write_weights

LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
# YAML models whose layout is a darknet cfg's (yolov4.cfg, yolov3.cfg, yolov2-voc.cfg)
SEED_EQUIVALENTS = ("yolov4_csp_darknet53.yaml", "yolov3.yaml", "yolov2.yaml")


def load_darknet_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every darknet tensor; the model's other entries may only be bookkeeping buffers."""
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys
               if not k.endswith(("num_batches_tracked", ".anchors", ".stride")) and not k.startswith("detect.")]
    if missing or result.unexpected_keys:
        raise DarknetError(f"{source}: weights do not fit the model (missing {missing[:3]}, "
                           f"unexpected {result.unexpected_keys[:3]})")


def import_darknet(cfg: str | Path, weights: str | Path | None = None) -> tuple[nn.Module, dict | None]:
    """``(model in eval mode, weights header or None)`` of a darknet cfg and optional weights."""
    model_cfg, convs = translate(read_cfg(cfg))
    model = build_model(model_cfg)
    header = None
    if weights:
        header, state = read_weights(weights, convs, str(cfg))
        load_darknet_state(model, state, str(weights))
    return model.eval(), header


def write_darknet(model: nn.Module, stem: str | Path, img_size: int = 416,
                  header: dict | None = None) -> tuple[Path, Path]:
    """``STEM.cfg`` + ``STEM.weights`` of a model with a darknet equivalent (else a DarknetError)."""
    sections, convs = export_sections(model, img_size)
    stem = Path(stem)
    cfg_path, weights_path = stem.with_name(stem.name + ".cfg"), stem.with_name(stem.name + ".weights")
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(write_cfg_text(sections))
    h = header or {}
    version = (h.get("major", DEFAULT_HEADER[0]), h.get("minor", DEFAULT_HEADER[1]),
               h.get("revision", DEFAULT_HEADER[2]))
    write_weights(weights_path, model.state_dict(), convs, version, int(h.get("seen", 0)))
    return cfg_path, weights_path


def export_checkpoint(weights: str | Path, stem: str | Path | None = None, img_size: int = 416) -> tuple[Path, Path]:
    """``export.py --include darknet``: a checkpoint's model (EMA weights when present) as cfg + weights."""
    from utils.train.checkpoint import load_checkpoint
    ckpt = load_checkpoint(weights)
    try:
        cfg = dict(ckpt["model_cfg"])
        cfg.pop("pretrained", None)
        model = build_model(cfg)
        model.load_state_dict(ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"])
    except (KeyError, RuntimeError, TypeError) as e:
        raise DarknetError(f"{weights}: checkpoint does not hold a usable model ({type(e).__name__})") from None
    header = ckpt.get("darknet_header") if isinstance(ckpt.get("darknet_header"), dict) else None
    return write_darknet(model, stem or Path(weights).with_suffix(""), img_size, header)


def _seed_mappings(model_cfg: dict, convs: list[ConvSpec], state: dict) -> dict[str, torch.Tensor]:
    """The same tensors under the keys of each seed YAML whose darknet layout equals this cfg's."""
    from models.yolo import load_model_cfg, parse_model
    sig = [(c.c_in, c.filters, c.size, c.groups, c.bn_prefix is None) for c in convs]
    mapped: dict[str, torch.Tensor] = {}
    for name in SEED_EQUIVALENTS:
        seed_cfg = {**load_model_cfg(ROOT / "configs" / name), "nc": model_cfg.get("nc")}
        with torch.device("meta"):  # the layout only: no memory, no initialisation
            layers, froms, _ = parse_model(seed_cfg)
        seed = SimpleNamespace(yaml=seed_cfg, model=layers, froms=froms)
        try:
            theirs = export_sections(seed)[1]
        except DarknetError:
            continue
        if [(c.c_in, c.filters, c.size, c.groups, c.bn_prefix is None) for c in theirs] != sig:
            continue
        for ours, other in zip(convs, theirs):
            for a, b in ((ours.prefix, other.prefix), (ours.bn_prefix, other.bn_prefix)):
                for k in (".weight", ".bias", ".running_mean", ".running_var"):
                    if a and a + k in state:
                        mapped[b + k] = state[a + k]
        LOGGER.info("darknet weights also mapped onto configs/%s", name)
    return mapped


def weights_checkpoint(path: str | Path) -> dict:
    """A checkpoint-like dict for ``train.py --weights X.weights``: the tensors under the keys of the
    model of ``X.cfg`` (next to the file) and of every seed YAML with the same darknet layout."""
    path = Path(path)
    cfg = path.with_suffix(".cfg")
    if not cfg.is_file():
        raise DarknetError(f"{path}: darknet weights need their cfg next to them ({cfg} not found); or convert "
                           f"them first: python -m utils.darknet.io --cfg X.cfg --weights {path} --out X.pt")
    model_cfg, convs = translate(read_cfg(cfg))
    _, state = read_weights(path, convs, str(cfg))
    mapped = _seed_mappings(model_cfg, convs, state)
    clash = [k for k in mapped if k in state and not torch.equal(mapped[k], state[k])]
    if clash:
        raise DarknetError(f"{path}: internal key clash between layouts at {clash[:3]}")
    return {"model": {**state, **mapped}, "ema": None, "darknet_cfg": str(cfg)}


def _names(path: str | None, nc: int) -> list[str]:
    if not path:
        return [str(i) for i in range(nc)]
    names = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if len(names) != nc:
        raise DarknetError(f"{path}: {len(names)} names for a model with {nc} classes")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m utils.darknet.io",
                                 description="Darknet cfg (+ weights) -> checkpoint of this framework.")
    ap.add_argument("--cfg", required=True, help="darknet .cfg")
    ap.add_argument("--weights", default="", help="darknet .weights (default: randomly initialised)")
    ap.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    ap.add_argument("--names", default="", help="class names file (darknet .names: one per line)")
    opt = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from utils.train.checkpoint import save_checkpoint
    try:
        model, header = import_darknet(opt.cfg, opt.weights or None)
        names = _names(opt.names, model.nc)
        save_checkpoint({"epoch": -1, "best_fitness": 0.0, "model_cfg": model.yaml, "names": names,
                         "model": model.state_dict(), "ema": None, "darknet_header": header,
                         "opt": {"cfg": str(opt.cfg), "weights": str(opt.weights)}}, opt.out)
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    LOGGER.info("wrote %s (%s, %d classes%s)", opt.out, Path(opt.cfg).name, model.nc,
                f", weights {opt.weights}" if opt.weights else ", random weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
