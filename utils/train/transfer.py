"""Initial weights from another run: every tensor whose name and shape match (``train.py --weights``).

A Darknet-19 classifier (``configs/darknet19_cls.yaml``) and ``configs/yolov2.yaml`` share rows
0-5, a Darknet-53 classifier (``darknet53_cls.yaml``) and ``yolov3.yaml`` rows 0-10, so a
classifier's backbone lands in the detector tensor by tensor (seed 004: classify, then detect).
"""
from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from utils.train.checkpoint import load_checkpoint

LOGGER = logging.getLogger(__name__)


def _row(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "model" else parts[0]


def transfer_weights(model: nn.Module, path: str | Path) -> dict[str, int]:
    """Load the matching tensors of checkpoint ``path`` (its EMA weights when present) into ``model``.

    Returns ``{'transferred', 'model_tensors', 'source_tensors'}`` and logs them with the rows that
    received tensors, e.g. ``transferred 110/125 tensors (rows 0-5) from best.pt (of 112 in it)``.
    """
    ckpt = load_checkpoint(path)
    src = ckpt["ema"] if ckpt.get("ema") is not None else ckpt["model"]
    own = model.state_dict()
    kept = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)
    rows = sorted({_row(k) for k in kept}, key=lambda r: (not r.isdigit(), int(r) if r.isdigit() else 0, r))
    digits = [int(r) for r in rows if r.isdigit()]
    span = (f"rows {digits[0]}-{digits[-1]}" if digits and digits == list(range(digits[0], digits[-1] + 1))
            else f"rows {', '.join(rows)}") if rows else "no rows"
    LOGGER.info("transferred %d/%d tensors (%s) from %s (of %d in it)", len(kept), len(own), span, path, len(src))
    return {"transferred": len(kept), "model_tensors": len(own), "source_tensors": len(src)}
