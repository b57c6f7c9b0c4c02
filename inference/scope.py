"""Out-of-scope detector: is this slice one the classifier's answer can be trusted on?

The Mahalanobis score (``ood.py``) flags images unlike the training data, but real
series are full of slices that are *like* training data and still out of scope: the skull
base, the vertex, the outer sagittal/coronal slices, where a slice classifier trained on
mid-brain sections calls normal anatomy "meningioma" or "pituitary" at p > 0.95. This
detector is a logistic regression on the PCA-reduced pooled features, fitted on real
volume slices labelled by their position in the head (``real_volumes``: in scope = enough
head and in the central part along the slice axis) plus the training JPEGs (in scope).
Its threshold keeps ``keep_in_scope`` of the in-scope fitting slices.

Capacity is chosen by leaving one patient out (``leave_one_case_out``): with ten training
patients, 48 components learned the patients rather than the anatomy and kept only 53 % of
the in-scope slices of two unseen patients' volumes; 32 components with a stronger L2 keep
71 % of them and still reject 81 % of their skull base, vertex and edge slices.
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
    n_components: int = 32,
    l2: float = 1.0,
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
    reg = l2 * np.eye(z.shape[1])
    reg[-1, -1] = 0.0
    beta = _newton_logistic(z, y, sample_w, reg, iterations)
    # The ridge shrinks the logits towards 0 (probabilities of 0.4-0.6 for every slice);
    # rescale them on the same data (Platt: a * logit + b, a > 0) so that P(in scope) means
    # what it says to the single-image gate's 0.5. The order, and so the threshold's
    # kept and rejected shares, do not change.
    logit = np.stack([z @ beta, np.ones(len(z))], axis=1)
    a, b = _newton_logistic(logit, y, sample_w, 1e-6 * np.eye(2), iterations)
    if a > 0:  # a fit no better than chance keeps its raw logits rather than flip them
        beta = a * beta
        beta[-1] += b
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


def _newton_logistic(
    z: NDArray[np.float64],
    y: NDArray[np.float64],
    sample_w: NDArray[np.float64],
    reg: NDArray[np.float64],
    iterations: int,
) -> NDArray[np.float64]:
    """Weighted, penalised logistic regression coefficients by Newton's method."""
    beta = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
        grad = z.T @ (sample_w * (p - y)) + reg @ beta
        hess = (z * (sample_w * p * (1 - p))[:, None]).T @ z + reg
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return beta


@dataclass(frozen=True)
class HeldOutScore:
    """Share of in-scope slices kept and out-of-scope slices rejected on unseen slices."""

    kept: float
    rejected: float
    groups: int


def score(det: ScopeDetector, features: F32, in_scope: NDArray[np.bool_]) -> HeldOutScore:
    """Kept and rejected shares of ``det`` at its threshold (nan for an absent side)."""
    keep = det.in_scope(features)
    y = np.asarray(in_scope, dtype=bool)
    kept = float(keep[y].mean()) if y.any() else float("nan")
    rejected = float((~keep[~y]).mean()) if (~y).any() else float("nan")
    return HeldOutScore(kept, rejected, 1)


def leave_one_case_out(
    features: F32,
    in_scope: NDArray[np.bool_],
    cases: NDArray[np.str_],
    always: tuple[F32, NDArray[np.bool_]] | None = None,
    **fit_options: Any,
) -> HeldOutScore:
    """Mean held-out scores over cases, each fitted on the other cases (plus ``always``,
    for example the training JPEGs, which have no patient)."""
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(in_scope, dtype=bool)
    kept: list[float] = []
    rejected: list[float] = []
    for case in sorted(set(np.asarray(cases).tolist())):
        out = np.asarray(cases) == case
        fx, fy = x[~out], y[~out]
        if always is not None:
            fx, fy = np.concatenate([fx, always[0]]), np.concatenate([fy, always[1]])
        if fy.min() == fy.max():
            continue
        s = score(fit_scope(fx, fy, **fit_options), x[out], y[out])
        kept.append(s.kept)
        rejected.append(s.rejected)
    return HeldOutScore(_mean(kept), _mean(rejected), len(kept))


def _mean(values: list[float]) -> float:
    """Mean of the defined values (a case without out-of-scope slices has no rejection)."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")
