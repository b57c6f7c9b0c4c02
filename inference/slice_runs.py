"""Runs of adjacent slices: the series rule's notion of "consistent across neighbours".

Pure helpers over slice positions (mm along the slice normal, or indices) and labels; the
rule itself (which slices, which labels, what a run means) is in ``inference.aggregation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def longest_run(indices: Sequence[int]) -> int:
    """Length of the longest run of consecutive integers among ``indices``."""
    best = run = 0
    prev = None
    for i in sorted(indices):
        run = run + 1 if prev is not None and i == prev + 1 else 1
        best = max(best, run)
        prev = i
    return best


@dataclass(frozen=True)
class Run:
    """Adjacent slices with one label: their extent (mm, or slices when positions are
    indices), count, label and first slice."""

    span: float
    n: int
    label: str
    first: int
    slices: tuple[int, ...] = ()


def widest_run(
    order: Sequence[int],
    label: dict[int, str],
    pos: NDArray[np.float64],
    min_slices: int,
    min_span: float,
) -> Run | None:
    """The widest run of slices adjacent in ``order`` that share a label (slices without one
    break runs), of at least ``min_slices`` slices spanning ``min_span``; a slice counts
    the series' median slice step."""
    steps = np.abs(np.diff(np.sort(pos)))
    step = float(np.median(steps)) if len(steps) else 1.0
    best: Run | None = None
    run: list[int] = []
    for i in [*order, -1]:  # -1 closes the last run
        lab = label.get(i)
        if lab is not None and run and label[run[-1]] == lab:
            run.append(i)
            continue
        if len(run) >= min_slices:
            span = float(abs(pos[run[-1]] - pos[run[0]])) + step
            if span >= min_span and (best is None or span > best.span):
                best = Run(span, len(run), label[run[0]], run[0], tuple(run))
        run = [i] if lab is not None else []
    return best


def has_close_neighbour(
    i: int, votes: list[int], pos: NDArray[np.float64], cent: NDArray[np.float64], limit: float
) -> bool:
    """Whether a vote on the nearest other slices of ``votes`` has its map centroid (``cent``,
    a share of the image side) within ``limit`` of slice ``i``'s."""
    others = [j for j in votes if j != i]
    step = np.min(np.abs(pos[others] - pos[i]))
    near = [j for j in others if abs(pos[j] - pos[i]) <= step + 1e-6]
    return any(float(np.linalg.norm(cent[j] - cent[i])) <= limit for j in near)
