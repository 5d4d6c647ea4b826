"""Darknet ``.weights`` files: read into / write from a state dict, with exact length checks.

Layout (little-endian): int32 ``major, minor, revision``; ``seen`` (images trained on) as uint64
when ``major * 10 + minor >= 2``, else uint32; then per ``[convolutional]`` layer in cfg order,
float32: biases ``[filters]``; with ``batch_normalize`` scales, rolling mean and rolling variance
``[filters]`` each; then the weights ``[filters, c_in / groups, size, size]`` (OIHW). The
convolutions and the keys of their tensors come from :class:`utils.darknet.build.ConvSpec`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from utils.darknet.build import ConvSpec
from utils.darknet.cfg import DarknetError

LOGGER = logging.getLogger(__name__)
DEFAULT_HEADER = (0, 2, 5)


def _header(buf: bytes, path: Path) -> tuple[dict, int]:
    major, minor, revision = (int(v) for v in np.frombuffer(buf[:12].ljust(12, b"\0"), "<i4", 3))
    wide = major * 10 + minor >= 2
    if len(buf) < (20 if wide else 16):
        raise DarknetError(f"{path}: {len(buf)} bytes, shorter than a darknet header ({20 if wide else 16} bytes)")
    seen = int(np.frombuffer(buf, "<u8" if wide else "<u4", 1, 12)[0])
    return {"major": major, "minor": minor, "revision": revision, "seen": seen}, 20 if wide else 16


def _conv_tensors(c: ConvSpec, flat: np.ndarray) -> dict[str, torch.Tensor]:
    n, parts, at = c.filters, {}, 0

    def take(count: int, shape: tuple) -> torch.Tensor:
        nonlocal at
        t = torch.from_numpy(flat[at:at + count].copy()).view(shape)
        at += count
        return t

    bias = take(n, (n,))
    if c.bn_prefix:
        parts[f"{c.bn_prefix}.bias"] = bias
        parts[f"{c.bn_prefix}.weight"] = take(n, (n,))
        parts[f"{c.bn_prefix}.running_mean"] = take(n, (n,))
        parts[f"{c.bn_prefix}.running_var"] = take(n, (n,))
    else:
        parts[f"{c.prefix}.bias"] = bias
    parts[f"{c.prefix}.weight"] = take(n * c.c_in // c.groups * c.size ** 2, (n, c.c_in // c.groups, c.size, c.size))
    return parts


def read_weights(path: str | Path, convs: list[ConvSpec], cfg_name: str = "the cfg") -> tuple[dict, dict]:
    """``(header, state dict)`` of a .weights file for these convolutions; any length mismatch is an
    error naming the cfg layer and byte offset, or the bytes left over."""
    path = Path(path)
    if not path.is_file():
        raise DarknetError(f"darknet weights not found: {path}")
    buf = path.read_bytes()
    header, offset = _header(buf, path)
    state: dict[str, torch.Tensor] = {}
    for c in convs:
        need = 4 * c.n_floats()
        if offset + need > len(buf):
            raise DarknetError(f"{path}: ends at byte {len(buf)} inside layer {c.layer} [convolutional] "
                               f"({cfg_name} line {c.line}), which needs bytes {offset}..{offset + need}: "
                               f"the file is truncated or belongs to another cfg")
        state.update(_conv_tensors(c, np.frombuffer(buf, "<f4", c.n_floats(), offset)))
        offset += need
    if offset != len(buf):
        last = f"layer {convs[-1].layer}" if convs else "the header"
        raise DarknetError(f"{path}: {len(buf) - offset} bytes left over after {last} (byte {offset} of "
                           f"{len(buf)}): the file belongs to another cfg")
    return header, state


def expected_size(convs: list[ConvSpec], header: tuple[int, int, int] = DEFAULT_HEADER) -> int:
    return (20 if header[0] * 10 + header[1] >= 2 else 16) + 4 * sum(c.n_floats() for c in convs)


def conv_arrays(c: ConvSpec, state: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """The float32 arrays of one convolution in file order."""
    keys = ([f"{c.bn_prefix}.bias", f"{c.bn_prefix}.weight", f"{c.bn_prefix}.running_mean",
             f"{c.bn_prefix}.running_var"] if c.bn_prefix else [f"{c.prefix}.bias"]) + [f"{c.prefix}.weight"]
    out = []
    for k in keys:
        if k not in state:
            raise DarknetError(f"layer {c.layer} [convolutional]: the model has no tensor {k}")
        out.append(state[k].detach().to("cpu", torch.float32).contiguous().numpy().reshape(-1))
    if sum(a.size for a in out) != c.n_floats():
        raise DarknetError(f"layer {c.layer} [convolutional]: the model's tensors hold "
                           f"{sum(a.size for a in out)} values, the cfg needs {c.n_floats()}")
    return out


def write_weights(path: str | Path, state: dict[str, torch.Tensor], convs: list[ConvSpec],
                  header: tuple[int, int, int] = DEFAULT_HEADER, seen: int = 0) -> int:
    """Write a .weights file; returns its size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wide = header[0] * 10 + header[1] >= 2
    with open(path, "wb") as f:
        f.write(np.array(header, "<i4").tobytes())
        f.write(np.array([seen], "<u8" if wide else "<u4").tobytes())
        for c in convs:
            for a in conv_arrays(c, state):
                f.write(a.astype("<f4", copy=False).tobytes())
    size = path.stat().st_size
    LOGGER.info("wrote %s (%d convolutions, %d bytes)", path, len(convs), size)
    return size


def random_state(convs: list[ConvSpec], seed: int = 0, gain: float = 1.0) -> dict[str, torch.Tensor]:
    """Random tensors for these convolutions (He-scaled weights, BN variances in [0.5, 1.5]):
    weights of the exact length for tests and benchmarks."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for c in convs:
        n, fan_in = c.filters, c.c_in // c.groups * c.size ** 2
        state[f"{c.prefix}.weight"] = torch.randn(n, c.c_in // c.groups, c.size, c.size, generator=g) * (gain / fan_in) ** 0.5
        if c.bn_prefix:
            state[f"{c.bn_prefix}.weight"] = torch.rand(n, generator=g) * 0.5 + 0.75
            state[f"{c.bn_prefix}.bias"] = torch.randn(n, generator=g) * 0.1
            state[f"{c.bn_prefix}.running_mean"] = torch.randn(n, generator=g) * 0.1
            state[f"{c.bn_prefix}.running_var"] = torch.rand(n, generator=g) + 0.5
        else:
            state[f"{c.prefix}.bias"] = torch.randn(n, generator=g) * 0.1
    return state
