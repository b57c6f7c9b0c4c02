"""The progress bar of the long commands (analyze, evaluate, explain-eval).

A tqdm bar with its total on stderr, so stdout keeps only the results; it is off with
``--quiet`` and when stderr is not a terminal (tqdm's ``disable=None``), e.g. in CI logs.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def progress_bar(total: int, unit: str, desc: str, quiet: bool) -> tqdm[None]:
    """A bar counting ``total`` ``unit``s (slices, images)."""
    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, disable=True if quiet else None)
