"""The study-level evaluation's outcomes and totals on hand-made results."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from inference.study_evaluation import (
    StudyOutcome,
    classify_outcome,
    markdown_table,
    read_labels,
    tally,
)


@pytest.mark.parametrize(
    ("expected", "result", "outcome"),
    [
        ("glioma", "glioma", "right"),
        ("glioma", "meningioma", "wrong_tumour_class"),
        ("glioma", "pituitary", "wrong_tumour_class"),
        ("glioma", "notumor", "missed_tumour"),
        ("glioma", "indeterminate", "indeterminate"),
        ("notumor", "notumor", "right"),
        ("notumor", "glioma", "normal_given_tumour"),
        ("notumor", "indeterminate", "indeterminate"),
        ("other", "notumor", "right"),
        ("other", "meningioma", "wrong_tumour_class"),
        ("meningioma", "error", "error"),
    ],
)
def test_outcome_of_each_pair(expected: str, result: str, outcome: str) -> None:
    assert classify_outcome(expected, result) == outcome


def test_unknown_expected_class_is_refused() -> None:
    with pytest.raises(ValueError):
        classify_outcome("tumour", "glioma")


def test_totals_on_a_hand_made_summary() -> None:
    rows = [
        StudyOutcome("a", "glioma", "glioma", "r"),
        StudyOutcome("b", "glioma", "indeterminate", "r"),
        StudyOutcome("c", "glioma", "notumor", "r"),
        StudyOutcome("d", "meningioma", "glioma", "r"),
        StudyOutcome("e", "notumor", "pituitary", "r"),
        StudyOutcome("f", "notumor", "notumor", "r"),
        StudyOutcome("g", "other", "indeterminate", "r"),
    ]
    t = tally(rows)
    assert t["studies"] == 7
    assert t["right"] == 2
    assert t["indeterminate"] == 2
    assert t["missed_tumour"] == 1
    assert t["wrong_tumour_class"] == 1
    assert t["normal_given_tumour"] == 1
    assert t["tumour_studies"] == 4
    assert t["tumour_studies_right"] == 1
    assert t["tumour_recall"] == 0.25
    table = markdown_table(rows)
    assert table.count("\n") == len(rows) + 1
    assert "| e |  | notumor | pituitary | normal_given_tumour |" in table
    assert t["tumour_patients"] == 4  # no patient given: each study its own patient
    assert t["tumour_patients_all_right"] == 1


def test_a_patient_counts_once_and_only_when_every_tumour_study_is_right() -> None:
    rows = [
        StudyOutcome("p1-axial", "glioma", "glioma", "r", patient="p1"),
        StudyOutcome("p1-sagittal", "glioma", "indeterminate", "r", patient="p1"),
        StudyOutcome("p1-study", "glioma", "glioma", "r", patient="p1"),
        StudyOutcome("p2-axial", "glioma", "glioma", "r", patient="p2"),
        StudyOutcome("p2-study", "glioma", "glioma", "r", patient="p2"),
        StudyOutcome("n1", "notumor", "notumor", "r", patient="n1"),
    ]
    t = tally(rows)
    assert (t["tumour_studies"], t["tumour_studies_right"]) == (5, 4)
    assert (t["tumour_patients"], t["tumour_patients_all_right"]) == (2, 1)


def test_labels_csv_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "labels.csv"
    with good.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "expected", "split"], ["s1", "glioma", "dev"]])
    assert read_labels(good) == [{"path": "s1", "expected": "glioma", "split": "dev"}]
    bad = tmp_path / "bad.csv"
    bad.write_text("folder,label\ns1,glioma\n")
    with pytest.raises(Exception, match="path,expected"):
        read_labels(bad)
