"""Model YAML -> network: ``parse_model``, :class:`Model`, the per-layer summary and its CLI.

    python models/yolo.py --cfg configs/yolov4_l.yaml --nc 4 --img-size 640

A model YAML has ``nc``, ``depth_multiple``, ``width_multiple``, ``anchors``, ``activation``, optionally
``bn_eps`` (every BatchNorm's epsilon; default each module's own, PyTorch's 1e-5), and
``backbone`` + ``head`` lists of rows ``[from, n, module, args]`` (rows are numbered across both
lists). Module names resolve through :data:`models.registry.REGISTRY`; a bad row stops with a
:class:`ModelConfigError` naming the file and the row.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.head import Detect
from models.registry import REGISTRY, Row, is_int
from utils.config import ConfigError, read_yaml
from utils.cli.checks import OneLineParser, int_at_least

LOGGER = logging.getLogger(__name__)

TOP_LEVEL_KEYS = {"nc", "depth_multiple", "width_multiple", "anchors", "activation", "backbone", "head",
                  "torchvision_backbone", "pretrained", "notes", "darknet", "bn_eps"}
DEFAULT_ACTIVATION = "mish"


class ModelConfigError(ConfigError):
    """A model YAML is wrong; the message names the file and the row."""


def load_model_cfg(path: str | Path) -> dict[str, Any]:
    """Read a model YAML with ``yaml.safe_load`` (a darknet ``.cfg`` is translated to the same rows);
    remember the source path for messages."""
    path = Path(path)
    if path.suffix == ".cfg":
        from utils.darknet.build import cfg_to_model_dict
        return cfg_to_model_dict(path)
    cfg = read_yaml(path, "model config", ModelConfigError)
    if not isinstance(cfg, dict):
        raise ModelConfigError(f"{path}: expected a mapping with backbone/head rows")
    cfg.setdefault("source", str(path))
    return cfg


class _Row:
    """One YAML row being built, for messages and channel bookkeeping."""

    def __init__(self, cfg: dict, i: int, row: Any, n_backbone: int):
        self.source = cfg.get("source", "<model yaml>")
        self.i = i
        self.where = f"backbone row {i}" if i < n_backbone else f"head row {i - n_backbone}"
        self.text = row
        if not (isinstance(row, (list, tuple)) and len(row) == 4):
            self.fail("a row must be [from, n, module, args]")
        self.f, self.n, self.name, self.args = row

    def fail(self, msg: str) -> None:
        raise ModelConfigError(f"{self.source}: layer {self.i} ({self.where}) {self.text}: {msg}")


def _check_top(cfg: dict[str, Any], source: str) -> tuple[int, float, float]:
    """``nc``, depth and width multiples, each checked; backbone and head must be non-empty lists."""
    nc = cfg["nc"]
    if not is_int(nc) or nc < 1:
        raise ModelConfigError(f"{source}: key 'nc' must be a positive integer (the number of classes), got {nc!r}")
    multiples = []
    for key in ("depth_multiple", "width_multiple"):
        v = cfg.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 8:
            raise ModelConfigError(f"{source}: key '{key}' must be a number in (0, 8], got {v!r}")
        multiples.append(float(v))
    eps = cfg.get("bn_eps", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 0.1:
        raise ModelConfigError(f"{source}: key 'bn_eps' must be a number in (0, 0.1], got {eps!r}")
    for key in ("backbone", "head"):
        if not isinstance(cfg[key], list) or not cfg[key]:
            raise ModelConfigError(f"{source}: key '{key}' must be a non-empty list of [from, n, module, args] rows")
    return nc, multiples[0], multiples[1]


def _resolve_arg(a: Any, nc: int, anchors: Any) -> Any:
    if a == "nc":
        return nc
    if a == "anchors":
        return anchors
    if a == "None":  # yolov5 YAMLs write None for Upsample's size
        return None
    return a


def _check_from(r: _Row) -> list[int]:
    fs = r.f if isinstance(r.f, list) else [r.f]
    if not fs or not all(isinstance(j, int) and not isinstance(j, bool) for j in fs):
        r.fail(f"'from' must be an integer or a list of integers, got {r.f!r}")
    for j in fs:
        if j >= 0 and j >= r.i:
            r.fail(f"'from' index {j} does not refer to an earlier layer")
        if j < 0 and r.i + j < (-1 if r.i == 0 and j == -1 else 0):
            r.fail(f"'from' index {j} reaches before the first layer")
    return fs


def _channels_in(r: _Row, fs: list[int], ch_in: int, out: list[int]) -> list[int]:
    return [ch_in if (r.i == 0 and j == -1) else out[j] for j in fs]


def parse_model(cfg: dict[str, Any], ch_in: int = 3,
                detector: bool = True) -> tuple[nn.Sequential, list[int], list[dict]]:
    """Build the layers of a model YAML (``detector=False``: a classifier, no Detect row at the end).

    Returns ``(layers, froms, rows)`` where ``froms[i]`` is layer i's ``from`` made absolute
    (``-1``, the previous layer, stays ``-1``; an int or a list of ints) and
    ``rows[i]`` describes the layer for the summary table (from, n, params, module, args).
    """
    source = cfg.get("source", "<model yaml>")
    unknown = set(cfg) - TOP_LEVEL_KEYS - {"source"}
    if unknown:
        raise ModelConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}; "
                               f"valid keys: {sorted(TOP_LEVEL_KEYS)}")
    for key in ("nc", "backbone", "head"):
        if key not in cfg:
            raise ModelConfigError(f"{source}: missing key '{key}'")
    nc, gd, gw = _check_top(cfg, source)
    anchors = cfg.get("anchors")
    act = cfg.get("activation", DEFAULT_ACTIVATION)
    rows_yaml = list(cfg["backbone"]) + list(cfg["head"])
    layers, froms, info, out = [], [], [], []
    for i, row in enumerate(rows_yaml):
        r = _Row(cfg, i, row, len(cfg["backbone"]))
        spec = REGISTRY.get(r.name)
        if spec is None:
            r.fail(f"unknown module '{r.name}'; known modules: {', '.join(sorted(REGISTRY))}")
        if not isinstance(r.args, list):
            r.fail("args must be a list")
        if not is_int(r.n) or r.n < 1:
            r.fail(f"n must be a positive integer, got {r.n!r}")
        fs = _check_from(r)
        n = max(round(r.n * gd), 1) if r.n > 1 else r.n
        kwargs = dict(r.args[-1]) if r.args and isinstance(r.args[-1], dict) else {}
        r.args = r.args[:-1] if kwargs else r.args
        if spec.act:
            kwargs.setdefault("act", act)
        c_in = _channels_in(r, fs, ch_in, out)
        row_in = Row(r.name, [_resolve_arg(a, nc, anchors) for a in r.args], c_in, n, gw, r.fail)
        args, c2 = spec.kind.build(spec, row_in)
        try:
            if spec.kind.repeats and n > 1:
                m = nn.Sequential(*(spec.cls(*args, **kwargs) for _ in range(n)))
            else:
                m = spec.cls(*args, **kwargs)
        except (TypeError, ValueError) as e:
            r.fail(f"wrong arguments {args} for {r.name}: {e}")
        layers.append(m)
        absolute = [j if j == -1 else (i + j if j < 0 else j) for j in fs]
        froms.append(absolute if isinstance(r.f, list) else absolute[0])
        out.append(c2)
        row_kwargs = {k: v for k, v in kwargs.items() if not (k == "act" and v == act)}
        info.append({"from": r.f, "n": n, "params": sum(p.numel() for p in m.parameters()),
                     "module": f"{spec.cls.__module__}.{spec.cls.__name__}",
                     "args": args + ([row_kwargs] if row_kwargs else [])})
    if detector and not isinstance(layers[-1], Detect):
        raise ModelConfigError(f"{source}: the last row must be a Detect head")
    return nn.Sequential(*layers), froms, info


class Model(nn.Module):
    """A YOLO model built from a YAML (path or dict). ``nc`` overrides the YAML's class count."""

    def __init__(self, cfg: str | Path | dict[str, Any], nc: int | None = None, ch: int = 3):
        super().__init__()
        cfg = load_model_cfg(cfg) if isinstance(cfg, (str, Path)) else dict(cfg)
        if nc is not None and nc != cfg.get("nc"):
            if "nc" in cfg and (not is_int(cfg["nc"]) or cfg["nc"] < 1):  # a bad YAML value even if overridden
                _check_top(cfg, cfg.get("source", "<model yaml>"))
            if not is_int(nc) or nc < 1:
                raise ModelConfigError(f"{cfg.get('source', '<model yaml>')}: the number of classes must be a "
                                       f"positive integer, got {nc!r}")
            cfg["nc"] = nc
        self.yaml = cfg
        self.model, self.froms, self.rows = parse_model(cfg, ch)
        self.save = sorted({j for f in self.froms for j in (f if isinstance(f, list) else [f]) if j != -1})
        self.detect: Detect = self.model[-1]
        self._init_strides(ch)
        self._init_weights()
        if cfg.get("pretrained"):
            from models.pretrained import load_torchvision_backbone
            load_torchvision_backbone(self, cfg.get("torchvision_backbone"), cfg["pretrained"])

    @property
    def nc(self) -> int:
        return self.detect.nc

    @property
    def stride(self) -> torch.Tensor:
        return self.detect.stride

    def forward(self, x: torch.Tensor):
        saved: dict[int, torch.Tensor] = {}
        for i, (m, f) in enumerate(zip(self.model, self.froms)):
            if f != -1:
                x = saved[f] if isinstance(f, int) else [x if j == -1 else saved[j] for j in f]
            x = m(x)
            if i in self.save:
                saved[i] = x
        return x

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every layer, in row order (feature extraction; the last is ``forward``'s).
        The dummy forward that finds the strides runs through here, so a layer that fails is named
        by its YAML row."""
        outs: list[torch.Tensor] = []
        for i, (m, f) in enumerate(zip(self.model, self.froms)):
            if f != -1:
                x = outs[f] if isinstance(f, int) else [x if j == -1 else outs[j] for j in f]
            try:
                x = m(x)
            except (RuntimeError, ValueError, TypeError, IndexError) as e:
                raise self._unfit(i, x, e) from None
            outs.append(x)
        return outs

    def _unfit(self, i: int, x: torch.Tensor | list[torch.Tensor], e: Exception) -> ModelConfigError:
        n_backbone = len(self.yaml["backbone"])
        where = f"backbone row {i}" if i < n_backbone else f"head row {i - n_backbone}"
        row = (list(self.yaml["backbone"]) + list(self.yaml["head"]))[i]
        shapes = [tuple(t.shape) for t in x] if isinstance(x, list) else tuple(x.shape)
        return ModelConfigError(f"{self.yaml.get('source', '<model yaml>')}: layer {i} ({where}) {row}: "
                                f"the layers do not fit together (input of shape {shapes}): "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")

    def _init_strides(self, ch: int) -> None:
        s = 256
        was_training = self.training
        self.train()
        with torch.no_grad():
            outs = self.forward_features(torch.zeros(1, ch, s, s))[-1]
        self.detect.stride = torch.tensor([s / o.shape[-2] for o in outs], dtype=torch.float32)
        if len(self.detect.stride) > 1 and not torch.all(self.detect.stride[1:] > self.detect.stride[:-1]):
            raise ModelConfigError(f"{self.yaml.get('source')}: Detect inputs must go from small to "
                                   f"large stride, got strides {self.detect.stride.tolist()}")
        self.train(was_training)

    def _init_weights(self) -> None:
        eps = self.yaml.get("bn_eps")   # e.g. yolov5's 1e-3; absent: each module's own (PyTorch's 1e-5)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.03
                if eps is not None:
                    m.eps = float(eps)
        self.detect.init_biases()

    def fuse(self) -> "Model":
        """Fold every BatchNorm that directly follows a conv into it (inference only)."""
        from models.fuse import fuse_conv_bn_pairs
        fuse_conv_bn_pairs(self)
        return self

    def info(self, img_size: int | None = 640) -> dict[str, Any]:
        from models.summary import model_info
        return model_info(self, img_size)


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(description="Build a model YAML and print its per-layer table.")
    ap.add_argument("--cfg", required=True, help="model YAML, e.g. configs/yolov4_l.yaml")
    ap.add_argument("--nc", type=int_at_least(1), default=None, help="override the number of classes")
    ap.add_argument("--img-size", type=int_at_least(32), default=640, help="input size for the GFLOPs figure")
    opt = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        model = Model(opt.cfg, nc=opt.nc)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from models.summary import print_table
    print_table(model, opt.img_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
