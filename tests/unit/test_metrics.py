"""Evaluation metrics on hand-made predictions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from inference.calibration import fit_temperature, softmax
from inference.classification_metrics import (
    binary_auc,
    classification_metrics,
    expected_calibration_error,
    roc_curve,
)

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


# ---- scikit-learn as the oracle on random data ---------------------------------------------


def _random_case(seed: int, n: int = 300, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    probs = softmax(logits.astype(np.float32))
    return labels, probs.astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn(seed: int) -> None:
    from sklearn import metrics as skm

    labels, probs = _random_case(seed)
    if seed == 4:
        labels[labels == 3] = 0  # class "d" absent: nan AUC, left out of the macro figures
    classes = ("a", "b", "c", "d")
    pred = probs.argmax(axis=1)
    m = classification_metrics(labels, probs, classes)
    present = sorted(set(labels.tolist()))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, pred, labels=range(4)).tolist()
    assert m["macro_f1"] == pytest.approx(
        skm.f1_score(labels, pred, labels=present, average="macro", zero_division=0.0)
    )
    prec, rec, f1, support = skm.precision_recall_fscore_support(
        labels, pred, labels=range(4), zero_division=0.0
    )
    for c, name in enumerate(classes):
        row = m["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx(
            (prec[c], rec[c], f1[c])
        )
        assert row["support"] == support[c]
        if c in present:
            assert row["auc"] == pytest.approx(skm.roc_auc_score(labels == c, probs[:, c]))
        else:
            assert np.isnan(row["auc"])
    ovr = [skm.roc_auc_score(labels == c, probs[:, c]) for c in present]
    assert m["macro_auc"] == pytest.approx(np.mean(ovr))


def test_auc_matches_scikit_learn_with_heavy_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    scores = rng.integers(0, 5, 200).astype(np.float64) / 4  # five distinct values
    positive = rng.random(200) < 0.3
    assert binary_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores))


def test_roc_curve_ends_and_area_match_scikit_learn() -> None:
    from sklearn.metrics import auc, roc_auc_score

    labels, probs = _random_case(11)
    fpr, tpr = roc_curve(probs[:, 2], labels == 2)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert auc(fpr, tpr) == pytest.approx(roc_auc_score(labels == 2, probs[:, 2]))


@pytest.mark.parametrize("n_bins", [5, 15])
def test_ece_matches_scikit_learn_reliability_bins(n_bins: int) -> None:
    """ECE = sum over bins of (bin share) * |accuracy - confidence|, bins from sklearn."""
    from sklearn.calibration import calibration_curve

    labels, probs = _random_case(3, n=1000)
    conf = probs.max(axis=1).astype(np.float64)
    correct = probs.argmax(axis=1) == labels
    frac_correct, mean_conf = calibration_curve(correct, conf, n_bins=n_bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=n_bins)
    shares = counts[counts > 0] / len(conf)
    expected = float(np.sum(shares * np.abs(frac_correct - mean_conf)))
    assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(expected)


def test_empty_labels_give_nan_summaries() -> None:
    m = classification_metrics(np.array([], np.int64), np.zeros((0, 3), np.float32), CLASSES)
    assert m["n"] == 0 and np.isnan(m["accuracy"]) and np.isnan(m["macro_f1"])
    assert m["confusion_matrix"] == [[0, 0, 0]] * 3
