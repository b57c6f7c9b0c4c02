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


def test_labels_csv_is_read_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "labels.csv"
    with good.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "expected", "split"], ["s1", "glioma", "dev"]])
    assert read_labels(good) == [{"path": "s1", "expected": "glioma", "split": "dev"}]
    bad = tmp_path / "bad.csv"
    bad.write_text("folder,label\ns1,glioma\n")
    with pytest.raises(Exception, match="path,expected"):
        read_labels(bad)
