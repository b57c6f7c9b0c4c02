"""The champion rule: not worse on the JPEG validation split nor on the real-study check."""

from __future__ import annotations

from inference.registry import REAL_HARMFUL, REAL_RIGHT, _worse_than


def test_lower_jpeg_accuracy_is_worse() -> None:
    cand = {"val_accuracy": "0.980", REAL_HARMFUL: "0", REAL_RIGHT: "9"}
    champ = {"val_accuracy": "0.982"}
    assert "JPEG" in _worse_than(cand, champ)


def test_unchecked_champion_loses_to_a_checked_equal() -> None:
    cand = {"val_accuracy": "0.982", REAL_HARMFUL: "0", REAL_RIGHT: "5"}
    assert _worse_than(cand, {"val_accuracy": "0.982"}) == ""


def test_more_harmful_or_fewer_right_real_results_are_worse() -> None:
    champ = {"val_accuracy": "0.98", REAL_HARMFUL: "1", REAL_RIGHT: "6"}
    more_harm = {"val_accuracy": "0.99", REAL_HARMFUL: "2", REAL_RIGHT: "8"}
    fewer_right = {"val_accuracy": "0.99", REAL_HARMFUL: "0", REAL_RIGHT: "5"}
    better = {"val_accuracy": "0.98", REAL_HARMFUL: "0", REAL_RIGHT: "7"}
    assert "harmful" in _worse_than(more_harm, champ)
    assert "fewer" in _worse_than(fewer_right, champ)
    assert _worse_than(better, champ) == ""
