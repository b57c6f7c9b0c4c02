"""Which of an explanation's own quality checks fail (vocabulary.explanation_checks)."""

from __future__ import annotations

import math

import pytest

from vocabulary.explanation_checks import CHECKS, failed_checks

PASSING = {
    "brain_mass": 0.8,
    "deletion_auc": 0.30,
    "deletion_auc_random": 0.35,
    "road_deletion_auc": 0.50,
    "road_deletion_auc_random": 0.90,
    "insertion_auc": 0.80,
    "insertion_auc_random": 0.70,
}


def test_a_map_better_than_random_everywhere_passes() -> None:
    assert failed_checks(PASSING) == ()


@pytest.mark.parametrize(
    ("name", "value", "check"),
    [
        ("brain_mass", 0.49, "brain_mass"),
        ("deletion_auc", 0.36, "deletion"),
        ("road_deletion_auc", 0.91, "road_deletion"),
        ("insertion_auc", 0.69, "insertion"),
    ],
)
def test_each_check_fails_on_its_own(name: str, value: float, check: str) -> None:
    assert failed_checks({**PASSING, name: value}) == (check,)


def test_unmeasured_figures_are_not_judged() -> None:
    fast = {"brain_mass": 0.3, "head_fraction": 0.6}  # the API's quality=fast
    assert failed_checks(fast) == ("brain_mass",)
    unmeasured = {**PASSING, "deletion_auc": math.nan, "insertion_auc_random": None}
    worse = {**unmeasured, "deletion_auc_random": 0.0, "insertion_auc": 0.0}
    assert failed_checks(worse) == ()
    assert failed_checks({}) == ()


def test_all_checks_fail_in_order() -> None:
    bad = {
        **PASSING,
        "brain_mass": 0.1,
        "deletion_auc": 0.9,
        "road_deletion_auc": 0.95,
        "insertion_auc": 0.1,
    }
    assert failed_checks(bad) == CHECKS
