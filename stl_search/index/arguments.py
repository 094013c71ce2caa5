"""Argument types shared by the index and search commands: a bad count is refused by argparse
with the flag's name (``argument --batch-size: must be a positive integer, got '0'``)."""

from __future__ import annotations

import argparse
import math

__all__ = ["positive_int", "non_negative_int", "non_negative_float"]


def _integer(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of images, hits, processes)."""
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (0 meaning none or the default, e.g. data-loader workers)."""
    return _integer(text, 0, "an integer >= 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a margin in seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value
