"""Checkpoints: state dicts plus plain metadata, written atomically, loadable with ``weights_only=True``.

Layout of a checkpoint (every value is a tensor, a state dict or plain Python data)::

    kind: "yolo-checkpoint", version: 1
    epoch: last finished epoch (int), best_fitness: float
    model_cfg: the resolved model YAML dict (nc included) -> rebuilds the network without the file
    names: class names, model: state dict, ema: state dict or None, ema_updates: int
    optimizer, scaler: state dicts or None
    rng: {"python", "numpy", "torch", "cuda"} generator states
    hyp, opt: dicts of the hyperparameters and command-line options, metrics: dict
"""
from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.atomic import remove_stale_temporaries, write_atomic
from utils.config import ConfigError

__all__ = ["KIND", "VERSION", "RESUME_KEYS", "CheckpointError", "rng_state", "set_rng_state", "save_checkpoint",
           "load_checkpoint", "require_keys", "load_model",
           "remove_stale_temporaries"]  # the atomic writer's cleanup, also reachable from here

KIND = "yolo-checkpoint"
VERSION = 1


class CheckpointError(ConfigError):
    """A checkpoint file is missing, unreadable or not one of ours."""


def rng_state() -> dict[str, Any]:
    """All random generator states, as tensors and plain data (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {"python": _py_state_plain(random.getstate()),
             "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state_plain(s: tuple) -> list:
    return [s[0], list(s[1]), s[2]]


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write ``ckpt`` atomically (:func:`utils.atomic.write_atomic`: temporary file, fsync, rename):
    a crash at any moment leaves either the old file or the new one, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: torch.save({"kind": KIND, "version": VERSION, **ckpt}, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one of our checkpoints with ``weights_only=True``; clear errors for anything else.

    A darknet ``.weights`` file (with its ``.cfg`` next to it) loads as the tensors of that model,
    for ``train.py --weights`` (see :func:`utils.darknet.io.weights_checkpoint`).
    """
    path = Path(path)
    if path.suffix == ".weights":
        from utils.darknet.io import weights_checkpoint
        return weights_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint (an interrupted copy or download?)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes would add stderr lines
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001  (pickle errors have many types)
        raise CheckpointError(f"{path}: not a loadable checkpoint: {_load_failure(e)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != KIND:
        raise CheckpointError(f"{path}: not a checkpoint of this framework (no '{KIND}' marker); "
                              f"expected a file written by train.py")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this code ({VERSION})")
    return ckpt


def _load_failure(e: Exception) -> str:
    """torch.load's error as one line, without torch's hint to retry unsafely (never do that)."""
    text = str(e)
    if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in text:
        detail = next((line.strip() for line in text.splitlines()
                       if "GLOBAL" in line or line.strip().startswith("Unsupported")), "")
        return ("refused: it holds Python objects other than tensors and plain data, which could run code "
                f"when loaded{f' ({detail})' if detail else ''}; only checkpoints written by train.py load")
    if not isinstance(e, RuntimeError):  # KeyError / EOFError / ValueError from a foreign header
        return f"not a PyTorch file (torch.load: {type(e).__name__} reading its header)"
    first = text.split(". ")[0].splitlines()[0].strip() if text.strip() else type(e).__name__
    return f"damaged or not a PyTorch checkpoint ({first}); was the file truncated or is it something else?"


RESUME_KEYS = ("epoch", "best_fitness", "model", "optimizer", "loop", "rng", "hyp", "opt")


def require_keys(ckpt: dict[str, Any], keys: tuple[str, ...], path: str | Path, use: str) -> None:
    """CheckpointError naming the file when ``ckpt`` lacks any of ``keys`` (needed for ``use``)."""
    missing = [k for k in keys if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: cannot {use}: the checkpoint has no {', '.join(map(repr, missing))} "
                              f"(written by another tool, or by train.py of an older version?)")


def load_model(path: str | Path, device: str | torch.device = "cpu", prefer_ema: bool = True):
    """Rebuild the network stored in a checkpoint (its config travels inside it).

    Returns ``(model, ckpt)``; the model is in eval mode on ``device`` with the EMA weights when
    present (those are what validation measured).
    """
    from models.classifier import build_model

    ckpt = load_checkpoint(path)
    cfg = dict(ckpt["model_cfg"])
    cfg.pop("pretrained", None)
    model = build_model(cfg)
    state = ckpt["ema"] if prefer_ema and ckpt.get("ema") is not None else ckpt["model"]
    model.load_state_dict(state)
    return model.to(device).eval(), ckpt
