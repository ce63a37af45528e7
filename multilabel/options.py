"""Numeric command-line options with their ranges, checked when the command line is parsed.

    p.add_argument("--epochs", type=options.WHOLE_1, default=4, help="the paper's 4")
    p.add_argument("--learning-rate", type=options.Range(float, low=0, low_open=True), ...)
    options.describe_ranges(p)          # once, after the last option: each range appended to its option's help

A Range is an argparse type: it gives the same Python value as int or float would (so that a checkpoint's recorded
settings compare equal on --resume), and refuses a value out of its range, NaN and infinity, with an
argparse.ArgumentTypeError naming the range (argparse prints usage and `SCRIPT: error: argument --X: ...`, exit 2).
No torch here: every script imports this.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds from 0 to this


@dataclass(frozen=True)
class Range:
    """An int or float type for argparse, from low to high (either may be None: unbounded), each end included
    unless its *_open is set; `words` are accepted as they are (e.g. auto)."""

    kind: type = int
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    words: tuple[str, ...] = ()

    def __call__(self, text: str) -> int | float | str:
        if text in self.words:
            return text
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self}") from None
        if not (math.isfinite(value) and self.holds(value)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self}")
        return value

    def holds(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            what += f" in {'(' if self.low_open else '['}{show(self.low)}, {show(self.high)}"
            what += ")" if self.high_open else "]"
        elif self.low is not None:
            what += f" {'>' if self.low_open else '>='} {show(self.low)}"
        elif self.high is not None:
            what += f" {'<' if self.high_open else '<='} {show(self.high)}"
        return what + (f", or {' or '.join(self.words)}" if self.words else "")


def show(bound: float) -> str:
    """1, 0.5, 4294967295: a bound as written."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


WHOLE_0 = Range(int, low=0)  # a count that may be none: 0, 1, 2, ...
WHOLE_1 = Range(int, low=1)  # a count of at least one
POSITIVE = Range(float, low=0, low_open=True)
NON_NEGATIVE = Range(float, low=0)
FRACTION = Range(float, low=0, high=1)  # a share of something, both ends included
THRESHOLD = Range(float, low=0, high=1, high_open=True)  # a label is predicted when its score is above it
SEED = Range(int, low=0, high=SEED_MAX)


def describe_ranges(parser: argparse.ArgumentParser) -> None:
    """Append its range to the help of each option whose type is a Range: the help states what the parser checks."""
    for action in parser._actions:
        if isinstance(action.type, Range):
            action.help = f"{action.help} [{action.type}]" if action.help else str(action.type)
