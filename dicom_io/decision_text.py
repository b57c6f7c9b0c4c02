"""The decision of a series or study in one sentence, as the report states it.

The class of a series comes from the vote of its assessed (eligible) slices, not from the
mean probabilities printed beside it; the sentence says so by giving the vote count. Takes
plain decision records (any object with the attributes below), so dicom_io needs no import
from inference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from dicom_io.codes import class_name

INDETERMINATE = "indeterminate"


class DecisionRecord(Protocol):
    """What a series decision record offers (vocabulary.decisions.SeriesDecision)."""

    @property
    def label(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def votes(self) -> Mapping[str, int]: ...

    @property
    def eligible_indices(self) -> Sequence[int]: ...


def series_sentence(decision: DecisionRecord) -> str:
    """E.g. 'Finding: Glioma (8 of 20 assessed slices; 8 of 20 eligible slices confidently
    glioma)' or 'Indeterminate: fewer than 3 eligible slices'."""
    reason = decision.reason.strip().rstrip(".") or "no reason recorded"
    if decision.label == INDETERMINATE:
        return f"Indeterminate: {reason}."
    assessed = len(decision.eligible_indices)
    votes = decision.votes.get(decision.label)
    count = f"{votes} of {assessed} assessed slices; " if votes is not None else ""
    return f"Finding: {class_name(decision.label)} ({count}slice vote: {reason})."


def study_sentence(label: str, reason: str) -> str:
    """E.g. 'Finding: Glioma (1 of 2 series called glioma)' or 'Indeterminate: <reason>'."""
    reason = reason.strip().rstrip(".") or "no reason recorded"
    if label == INDETERMINATE:
        return f"Indeterminate: {reason}."
    return f"Finding: {class_name(label)} (series vote: {reason})."
