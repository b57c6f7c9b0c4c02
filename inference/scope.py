"""Out-of-scope detector: is this slice one the classifier's answer can be trusted on?

The Mahalanobis score (``ood.py``) flags images unlike the training data, but real
series are full of slices that are *like* training data and still out of scope: the skull
base, the vertex, the outer sagittal/coronal slices, where a slice classifier trained on
mid-brain sections calls normal anatomy "meningioma" or "pituitary" at p > 0.95. This
detector is a logistic regression on the PCA-reduced pooled features, fitted on real
volume slices labelled by their position in the head (``real_volumes``: in scope = enough
head and in the central part along the slice axis) plus the training JPEGs (in scope).
Its threshold keeps ``keep_in_scope`` of the in-scope fitting slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class ScopeDetector:
    mean: F32  # (D,) feature mean
    components: F32  # (D, k) PCA directions
    scale: F32  # (k,) standard deviation of each component
    weights: F32  # (k,)
    bias: float
    threshold: float  # probability of "in scope" below which a slice is out of scope

    def probability(self, features: F32) -> F32:
        """Probability that each row's slice is in scope."""
        z = (np.asarray(features, dtype=np.float32) - self.mean) @ self.components / self.scale
        logit = np.clip(z @ self.weights + self.bias, -30.0, 30.0)
        return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=np.float32)

    def in_scope(self, features: F32) -> NDArray[np.bool_]:
        return np.asarray(self.probability(features) >= self.threshold, dtype=bool)

    def to_state(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "components": self.components,
            "scale": self.scale,
            "weights": self.weights,
            "bias": self.bias,
            "threshold": self.threshold,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ScopeDetector:
        def arr(key: str) -> F32:
            return np.asarray(state[key], dtype=np.float32)

        return cls(
            arr("mean"),
            arr("components"),
            arr("scale"),
            arr("weights"),
            float(state["bias"]),
            float(state["threshold"]),
        )


def fit_scope(
    features: F32,
    in_scope: NDArray[np.bool_],
    n_components: int = 48,
    l2: float = 1e-2,
    keep_in_scope: float = 0.95,
    iterations: int = 50,
) -> ScopeDetector:
    """Balanced, L2-regularised logistic regression fitted by Newton's method."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(in_scope, dtype=np.float64)
    if y.min() == y.max():
        raise ValueError("fitting the scope detector needs in-scope and out-of-scope slices")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[: min(n_components, vt.shape[0])].T
    z = (x - mean) @ comps
    scale = z.std(axis=0) + 1e-6
    z = np.hstack([z / scale, np.ones((len(z), 1))])
    w_pos, w_neg = 0.5 / y.mean(), 0.5 / (1 - y.mean())
    sample_w = np.where(y > 0, w_pos, w_neg) / len(y)
    beta = np.zeros(z.shape[1])
    reg = l2 * np.eye(z.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
        grad = z.T @ (sample_w * (p - y)) + reg @ beta
        hess = (z * (sample_w * p * (1 - p))[:, None]).T @ z + reg
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    det = ScopeDetector(
        mean.astype(np.float32),
        comps.astype(np.float32),
        scale.astype(np.float32),
        beta[:-1].astype(np.float32),
        float(beta[-1]),
        threshold=0.0,
    )
    probs = det.probability(np.asarray(features, dtype=np.float32))
    threshold = float(np.quantile(probs[y > 0], 1.0 - keep_in_scope))
    return ScopeDetector(det.mean, det.components, det.scale, det.weights, det.bias, threshold)
