"""Study-level evaluation: expected class vs the pipeline's study result, and the totals.

The outcomes that matter to a radiologist, in order of harm: a tumour class on a normal
study, a wrong tumour class, a missed tumour (``notumor`` on a tumour study), then an
honest ``indeterminate``. ``expected`` may also be ``other`` (a non-tumour lesion): any
tumour class there is wrong, ``notumor`` or ``indeterminate`` are acceptable.

Several studies may come from one patient (planes, reformats, a multi-series study): the
totals also count tumour patients and those whose every tumour study got its class, the
figure that does not grow by adding a patient's series again.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vocabulary.errors import InputError
from vocabulary.identity import CLASSES

OTHER = "other"
OUTCOMES = (
    "right",
    "wrong_tumour_class",
    "missed_tumour",
    "indeterminate",
    "normal_given_tumour",
    "error",
)


@dataclass(frozen=True)
class StudyOutcome:
    name: str
    expected: str
    result: str  # a class, "indeterminate" or "error"
    reason: str
    split: str = ""  # "train" / "dev" / "" (where the case was used)
    patient: str = ""  # who the study belongs to; "" = a patient of its own

    @property
    def outcome(self) -> str:
        return classify_outcome(self.expected, self.result)


def classify_outcome(expected: str, result: str) -> str:
    """One of OUTCOMES for an expected class and a study result."""
    if expected not in (*CLASSES, OTHER):
        raise ValueError(f"unknown expected class {expected!r}")
    if result == "error":
        return "error"
    if result not in CLASSES:
        return "indeterminate"
    tumour = result != "notumor"
    if expected == "notumor":
        return "normal_given_tumour" if tumour else "right"
    if expected == OTHER:
        return "wrong_tumour_class" if tumour else "right"
    if result == expected:
        return "right"
    return "wrong_tumour_class" if tumour else "missed_tumour"


def tally(rows: Iterable[StudyOutcome]) -> dict[str, float]:
    """Counts per outcome, plus the tumour studies given their class and the share."""
    items = list(rows)
    counts: dict[str, float] = {k: 0 for k in OUTCOMES}
    for r in items:
        counts[r.outcome] += 1
    tumour = [r for r in items if r.expected not in ("notumor", OTHER)]
    right = sum(1 for r in tumour if r.outcome == "right")
    counts["studies"] = len(items)
    counts["tumour_studies"] = len(tumour)
    counts["tumour_studies_right"] = right
    counts["tumour_recall"] = round(right / len(tumour), 4) if tumour else 0.0
    patients: dict[str, list[StudyOutcome]] = {}
    for r in tumour:
        patients.setdefault(r.patient or r.name, []).append(r)
    counts["tumour_patients"] = len(patients)
    counts["tumour_patients_all_right"] = sum(
        all(r.outcome == "right" for r in studies) for studies in patients.values()
    )
    return counts


def markdown_table(rows: Iterable[StudyOutcome]) -> str:
    """A README-ready table, one line per study."""
    lines = [
        "| study | split | expected | result | outcome | reason |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        reason = r.reason.replace("|", "/")
        lines.append(
            f"| {r.name} | {r.split} | {r.expected} | {r.result} | {r.outcome} | {reason} |"
        )
    return "\n".join(lines)


def read_labels(path: Path) -> list[dict[str, str]]:
    """Rows of a ``path,expected[,split[,patient]]`` CSV."""
    with Path(path).open(newline="") as fh:
        rows = [
            {k.strip(): (v or "").strip() for k, v in row.items() if k}
            for row in csv.DictReader(fh)
        ]
    if not rows or "path" not in rows[0] or "expected" not in rows[0]:
        raise InputError(f"{Path(path).name}: needs a header with path,expected[,split]")
    return rows
