"""yolov5n weights trained by the yolov5 package, inside this project's ``yolov5n_layout`` model, so this
project's inference and evaluator can score them (``test.py --weights``): it tells whether a gap between
the two frameworks is learned (training) or measured (inference, NMS, scoring).

    $HOME/.cache/peer-venv/bin/python benchmarks/peer_yolov5.py state --weights CELL/train/weights/best.pt --out /tmp/y5.pt
    .venv/bin/python benchmarks/peer_weights.py --state /tmp/y5.pt --template OURS/weights/best.pt --out /tmp/y5_here.pt
    .venv/bin/python test.py --weights /tmp/y5_here.pt --data D.yaml --img-size 160 --iou-thres 0.6

``--template`` is a checkpoint of this project's ``configs/yolov5n_layout.yaml`` trained on the same data
(it supplies the model YAML, class names and category ids); its weights are replaced tensor for tensor
by name (yolov5n_layout uses yolov5's module names; ``detect.*`` is the head's alias of ``model.24.*``).
Strides are the template's; anchors are yolov5's own, which its autoanchor may have refitted to the data,
turned from its grid units into this project's input pixels (x the template's stride per level).
"""
from __future__ import annotations

import argparse
import sys

import torch

from utils.train.checkpoint import load_checkpoint, save_checkpoint


def peer_state_into(template: dict, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The template's model state with every weight taken from the yolov5 ``state`` of the same name
    (anchors: yolov5's grid units x the template's strides)."""
    out, missing = {}, []
    for key, value in template.items():
        src = "model.24." + key[len("detect."):] if key.startswith("detect.") else key
        if src.endswith("stride"):
            out[key] = value.clone()
        elif src.endswith("anchors") and src in state and state[src].shape == value.shape:
            stride = template[key[: -len("anchors")] + "stride"]
            out[key] = state[src].to(value.dtype) * stride.view(-1, 1, 1)
        elif src in state and state[src].shape == value.shape:
            out[key] = state[src].to(value.dtype).clone()
        else:
            missing.append(key)
    if missing:
        raise SystemExit(f"error: {len(missing)} tensors have no yolov5 counterpart, e.g. {missing[0]} "
                         "(is the template a yolov5n_layout checkpoint with the same nc?)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", required=True, help="peer_yolov5.py state output")
    ap.add_argument("--template", required=True, help="a yolov5n_layout checkpoint of this project, same data")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    ckpt = load_checkpoint(a.template)
    weights = peer_state_into(ckpt["ema"] or ckpt["model"], torch.load(a.state, weights_only=True))
    save_checkpoint({**ckpt, "model": weights, "ema": weights}, a.out)
    print(f"wrote {a.out}: {len(weights)} tensors from {a.state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
