"""The decision records: what the aggregation rule decided for each slice and a series.

Written by ``inference.aggregation``, read by the pipeline and by ``dicom_io`` (the
Structured Report records them), so they live here rather than in either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INDETERMINATE = "indeterminate"  # the label of an abstention (series or study)


@dataclass(frozen=True)
class SliceDecision:
    """One slice: assessed or not (and why), its predicted class and that class's probability."""

    index: int
    eligible: bool
    reason: str
    predicted: str
    probability: float


@dataclass(frozen=True)
class SeriesDecision:
    """One series: a class name or "indeterminate", the reason, mean probabilities, votes."""

    label: str  # a class name or "indeterminate"
    reason: str
    probabilities: dict[str, float]
    slices: tuple[SliceDecision, ...] = field(default_factory=tuple)
    votes: dict[str, int] = field(default_factory=dict)

    @property
    def eligible_indices(self) -> list[int]:
        return [s.index for s in self.slices if s.eligible]
