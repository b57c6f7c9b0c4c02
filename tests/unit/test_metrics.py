"""Evaluation metrics on hand-made predictions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from inference.calibration import fit_temperature, softmax
from inference.metrics import binary_auc, classification_metrics, expected_calibration_error

CLASSES = ("a", "b", "c")


def test_metrics_on_hand_made_predictions() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.2, 0.7, 0.1],  # wrong: 0 -> 1
            [0.1, 0.8, 0.1],
            [0.1, 0.6, 0.3],
            [0.1, 0.1, 0.8],
            [0.3, 0.1, 0.6],
        ],
        dtype=np.float32,
    )
    m = classification_metrics(labels, probs, CLASSES)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    assert m["per_class"]["a"]["precision"] == pytest.approx(1.0)
    assert m["per_class"]["a"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    f1_a, f1_b, f1_c = 2 / 3, 0.8, 1.0
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b + f1_c) / 3)
    assert m["per_class"]["c"]["support"] == 2


def test_auc_known_values_and_ties() -> None:
    pos = np.array([True, True, False, False])
    assert binary_auc(np.array([0.9, 0.8, 0.2, 0.1]), pos) == 1.0
    assert binary_auc(np.array([0.1, 0.2, 0.8, 0.9]), pos) == 0.0
    assert binary_auc(np.array([0.5, 0.5, 0.5, 0.5]), pos) == 0.5
    assert np.isnan(binary_auc(np.array([0.1, 0.2]), np.array([True, True])))


def test_ece_perfect_and_overconfident() -> None:
    labels = np.array([0, 1, 0, 1])
    exact = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    assert expected_calibration_error(exact, labels) == pytest.approx(0.0)
    over = np.array([[0.99, 0.01]] * 4, np.float32)  # always says class 0, right half the time
    assert expected_calibration_error(over, labels) == pytest.approx(0.49, abs=1e-6)


def test_temperature_scaling_softens_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3)).astype(np.float32)
    logits[np.arange(400), labels] += 1.0
    t = fit_temperature(logits * 5, labels)
    assert t > 2.0
    assert softmax(logits * 5, t).max(axis=1).mean() < softmax(logits * 5).max(axis=1).mean()
