"""Command-line value checks shared by train.py, test.py, detect.py and export.py."""
from __future__ import annotations

import argparse
from typing import Callable

from utils.config import ConfigError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are ONE line on stderr (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type`` for integers ``>= low``: a bad value stops the CLI with exit code 2 and
    ``argument --flag: must be >= low, got N`` (no traceback)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


def float_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse ``type`` for finite numbers in ``[low, high]`` (exit code 2 and
    ``argument --flag: must be in [low, high], got x`` otherwise)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:  # also False for nan
            raise argparse.ArgumentTypeError(f"must be in [{low:g}, {high:g}], got {text}")
        return value
    return parse


def check_freeze(freeze: list[int], n_layers: int, cfg: str) -> None:
    """``--freeze N`` (the first N layers) or ``--freeze i j ...`` (those layers) must leave some
    layer of the model's ``n_layers`` to train; ConfigError naming the flag otherwise."""
    if len(freeze) == 1 and freeze[0] >= n_layers:
        raise ConfigError(f"--freeze {freeze[0]}: {cfg} has {n_layers} layers (0-{n_layers - 1}); freezing the "
                         f"first {freeze[0]} leaves nothing to train (the head is layer {n_layers - 1})")
    bad = [i for i in freeze if i >= n_layers] if len(freeze) > 1 else []
    if bad:
        raise ConfigError(f"--freeze {' '.join(map(str, freeze))}: no layer {bad[0]} in {cfg} "
                          f"(layers 0-{n_layers - 1})")
    if len(freeze) > 1 and set(freeze) >= set(range(n_layers)):
        raise ConfigError(f"--freeze {' '.join(map(str, freeze))}: every layer of {cfg} frozen, nothing to train")
