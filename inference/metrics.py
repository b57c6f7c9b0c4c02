"""Classification metrics computed from labels and probabilities (pure numpy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray


def confusion_matrix(
    labels: NDArray[np.int64], preds: NDArray[np.int64], n: int
) -> NDArray[np.int64]:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def binary_auc(scores: NDArray[np.float64], positive: NDArray[np.bool_]) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties averaged; nan if one class."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(
    probs: NDArray[np.float32], labels: NDArray[np.int64], n_bins: int = 15
) -> float:
    """ECE over equal-width confidence bins of the top-class probability."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(float(correct[sel].mean()) - float(conf[sel].mean()))
    return float(ece)


def classification_metrics(
    labels: Sequence[int] | NDArray[np.int64],
    probs: NDArray[np.float32],
    classes: Sequence[str],
) -> dict[str, Any]:
    """accuracy, macro F1, per-class P/R/F1/support, confusion matrix, macro AUC, ECE."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float32)
    pred = p.argmax(axis=1)
    n = len(classes)
    cm = confusion_matrix(y, pred, n)
    per_class: dict[str, dict[str, float]] = {}
    f1s, aucs = [], []
    for c, name in enumerate(classes):
        tp = float(cm[c, c])
        prec = tp / cm[:, c].sum() if cm[:, c].sum() else 0.0
        rec = tp / cm[c, :].sum() if cm[c, :].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        auc = binary_auc(p[:, c].astype(np.float64), y == c)
        per_class[name] = {
            "precision": prec,
            "recall": rec,
            "f1": f1,
            "support": int(cm[c, :].sum()),
            "auc": auc,
        }
        if cm[c, :].sum():
            f1s.append(f1)
        if not np.isnan(auc):
            aucs.append(auc)
    return {
        "classes": list(classes),
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "macro_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "macro_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "ece": expected_calibration_error(p, y) if len(y) else float("nan"),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }
