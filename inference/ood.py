"""Out-of-distribution score: Mahalanobis distance of pooled features to the training data.

Features are reduced by PCA, then compared to the nearest class mean under a shared
covariance (Lee et al., 2018). The threshold is a high percentile of validation scores, so
slices unlike anything in training (skull base, vertex, other sequences) are flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class FeatureDistance:
    mean: F32  # (D,)
    components: F32  # (D, k)
    class_means: F32  # (C, k)
    precision: F32  # (k, k)
    threshold: float

    def score(self, features: F32) -> F32:
        """Squared Mahalanobis distance to the closest class mean, per row."""
        z = (np.asarray(features, dtype=np.float32) - self.mean) @ self.components
        diffs = z[:, None, :] - self.class_means[None, :, :]
        d = np.einsum("nck,kl,ncl->nc", diffs, self.precision, diffs)
        return np.asarray(d.min(axis=1), dtype=np.float32)

    def to_state(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "components": self.components,
            "class_means": self.class_means,
            "precision": self.precision,
            "threshold": self.threshold,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureDistance:
        def arr(key: str) -> F32:
            return np.asarray(state[key], dtype=np.float32)

        return cls(
            arr("mean"),
            arr("components"),
            arr("class_means"),
            arr("precision"),
            float(state["threshold"]),
        )


def fit_feature_distance(
    features: F32, labels: NDArray[np.int64], n_components: int = 48
) -> FeatureDistance:
    """Fit PCA + class means + shared covariance on in-distribution features."""
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(n_components, vt.shape[0])
    comps = vt[:k].T
    z = xc @ comps
    classes = np.unique(labels)
    means = np.stack([z[labels == c].mean(axis=0) for c in classes])
    resid = z - means[np.searchsorted(classes, labels)]
    cov = resid.T @ resid / max(1, len(z) - 1) + 1e-6 * np.eye(k)
    return FeatureDistance(
        mean.astype(np.float32),
        comps.astype(np.float32),
        means.astype(np.float32),
        np.linalg.inv(cov).astype(np.float32),
        threshold=float("inf"),
    )


def with_threshold(fd: FeatureDistance, scores: F32, percentile: float = 99.0) -> FeatureDistance:
    """Same model, threshold at a percentile of in-distribution (validation) scores."""
    return FeatureDistance(
        fd.mean,
        fd.components,
        fd.class_means,
        fd.precision,
        float(np.percentile(scores, percentile)),
    )
