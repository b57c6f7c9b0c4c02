"""Classification metrics from labels and probabilities (scikit-learn, plus ECE in numpy).

Conventions kept from the first version: a class nobody predicted has precision 0, a
class absent from the labels has AUC nan and is left out of macro F1 and macro AUC, and
an empty label set gives nan summaries and an all-zero confusion matrix. scikit-learn has
no expected calibration error, so ECE is computed here (equal-width confidence bins).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn import metrics as skm


def confusion_matrix(
    labels: NDArray[np.int64], preds: NDArray[np.int64], n: int
) -> NDArray[np.int64]:
    """Counts with true class on rows and predicted class on columns, for classes 0..n-1."""
    if len(labels) == 0:
        return np.zeros((n, n), dtype=np.int64)
    return np.asarray(skm.confusion_matrix(labels, preds, labels=np.arange(n)), dtype=np.int64)


def binary_auc(scores: NDArray[np.float64], positive: NDArray[np.bool_]) -> float:
    """ROC AUC (ties count one half); nan when only one class is present."""
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == len(positive):
        return float("nan")
    return float(skm.roc_auc_score(positive, scores))


def roc_curve(
    scores: NDArray[np.float32], positive: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(false positive rate, true positive rate) points of the ROC curve, from (0, 0)."""
    fpr, tpr, _ = skm.roc_curve(positive, scores, drop_intermediate=False)
    return np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)


def expected_calibration_error(
    probs: NDArray[np.float32], labels: NDArray[np.int64], n_bins: int = 15
) -> float:
    """ECE over equal-width confidence bins of the top-class probability."""
    conf = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(
        np.bincount(bins, weights=correct, minlength=n_bins)
        - np.bincount(bins, weights=conf, minlength=n_bins)
    )
    return float(gap[count > 0].sum() / max(1, len(conf)))


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
    if len(y):
        prec, rec, f1, _ = skm.precision_recall_fscore_support(
            y, pred, labels=np.arange(n), zero_division=0.0
        )
    else:
        prec = rec = f1 = np.zeros(n)
    support = cm.sum(axis=1)
    aucs = [binary_auc(p[:, c].astype(np.float64), y == c) for c in range(n)]
    per_class = {
        name: {
            "precision": float(prec[c]),
            "recall": float(rec[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
            "auc": aucs[c],
        }
        for c, name in enumerate(classes)
    }
    present = [float(f1[c]) for c in range(n) if support[c]]
    finite_aucs = [a for a in aucs if not np.isnan(a)]
    return {
        "classes": list(classes),
        "n": int(len(y)),
        "accuracy": float(skm.accuracy_score(y, pred)) if len(y) else float("nan"),
        "macro_f1": float(np.mean(present)) if present else float("nan"),
        "macro_auc": float(np.mean(finite_aucs)) if finite_aucs else float("nan"),
        "ece": expected_calibration_error(p, y) if len(y) else float("nan"),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }
