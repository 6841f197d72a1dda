"""Command-line values checked where they are parsed: a bad number is refused by argparse
with exit status 2 and a message naming the flag and the range, before any work starts."""

from __future__ import annotations

import argparse
import math

MAX_SEED = 2**32 - 1
MAX_OBJECT_ID = 2**53  # object ids travel through JSON: exact in a double


def bounded_int(low: int, high: int):
    """An argparse type: an integer in [low, high], else a message naming the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {text}")
        return value
    parse.__name__ = "integer"
    return parse


def bounded_float(low: float, high: float, *, low_open: bool = False):
    """An argparse type: a finite number in [low, high] (or (low, high] with low_open)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"must be a number in {'(' if low_open else '['}{low:g}, {high:g}], got {text}")
        return value
    parse.__name__ = "number"
    return parse


def object_id(text: str) -> int:
    """An object id: a whole number in [1, 2**53] written as one ("1.0" is refused)."""
    return bounded_int(1, MAX_OBJECT_ID)(text)


def non_empty(what: str):
    """An argparse type: a string with something in it."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"is empty: name {what}")
        return text
    parse.__name__ = what
    return parse
