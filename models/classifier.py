"""An image classifier built from the same rows as the detectors (Darknet-19 of ``darknet19.cfg``).

Its rows end without a Detect head; ``forward`` returns the last row's output (class probabilities
``[B, nc, 1, 1]`` for darknet's ``[avgpool]`` + ``[softmax]``; logits ``[B, nc]`` for a YAML whose
last row is ``Classify``, the trainable head of ``configs/darknet19_cls.yaml``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from models.yolo import Model, load_model_cfg, parse_model


def is_classifier_cfg(cfg: dict[str, Any]) -> bool:
    """A darknet classifier cfg, or a YAML whose last row is a ``Classify`` head."""
    head = cfg.get("head")
    last = head[-1] if isinstance(head, list) and head else None
    if isinstance(last, (list, tuple)) and len(last) == 4 and last[2] == "Classify":
        return True
    return bool(isinstance(cfg.get("darknet"), dict) and cfg["darknet"].get("classifier"))


class ClassifierModel(Model):
    """Rows without a Detect head; ``nc`` is the YAML's class count."""

    def __init__(self, cfg: str | Path | dict[str, Any], ch: int = 3,
                 nc: int | None = None):  # noqa: D107 (Model's init is not run)
        nn.Module.__init__(self)
        cfg = load_model_cfg(cfg) if isinstance(cfg, (str, Path)) else dict(cfg)
        if nc is not None and nc != cfg.get("nc"):  # a Classify head reads nc from the YAML's 'nc'
            cfg["nc"] = nc
        self.yaml = cfg
        self.model, self.froms, self.rows = parse_model(cfg, ch, detector=False)
        if cfg.get("bn_eps") is not None:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eps = float(cfg["bn_eps"])
        self.save = sorted({j for f in self.froms for j in (f if isinstance(f, list) else [f]) if j != -1})
        self.detect = None

    @property
    def nc(self) -> int:
        return int(self.yaml["nc"])


def build_model(cfg: dict[str, Any]) -> nn.Module:
    """A detector (:class:`Model`) or, for a classifier dict, a :class:`ClassifierModel`."""
    return ClassifierModel(cfg) if is_classifier_cfg(cfg) else Model(cfg)
