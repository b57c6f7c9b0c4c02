"""Aggregate explanation-quality metrics over a labelled set (used by ``explain-eval``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from explain.quality import QualityMetrics

METRICS = (
    "brain_mass",
    "deletion_auc",
    "insertion_auc",
    "deletion_auc_random",
    "insertion_auc_random",
    "head_fraction",
    "road_deletion_auc",
    "road_deletion_auc_random",
)
OUTSIDE_BRAIN = 0.5  # brain_mass below this: most positive attribution lies outside the head


@dataclass(frozen=True)
class MetricRow:
    """One image's metrics for one method."""

    label: int
    predicted: int
    metrics: QualityMetrics


def _stats(rows: Sequence[MetricRow]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(rows)}
    if not rows:
        return out
    for name in METRICS:
        vals = np.array([getattr(r.metrics, name) for r in rows], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[name] = {
            "mean": float(vals.mean()) if vals.size else None,
            "std": float(vals.std()) if vals.size else None,
        }
    mass = np.array([r.metrics.brain_mass for r in rows])
    out["share_brain_mass_below_0_5"] = float((mass < OUTSIDE_BRAIN).mean())
    return out


def summarise_method(
    rows: Sequence[MetricRow],
    classes: Sequence[str],
    rank_corr: Sequence[float] = (),
) -> dict[str, Any]:
    """Per-method summary: overall means, per true class and by correctness.

    Top-level keys include brain_mass_mean, deletion_auc_mean, insertion_auc_mean,
    their random-map references, share_brain_mass_below_0_5 and randomisation_rank_corr
    (mean Spearman over the images checked; None when not computed).
    """
    overall = _stats(rows)
    out: dict[str, Any] = {"n": len(rows)}
    for name in METRICS:
        entry = overall.get(name)
        out[f"{name}_mean"] = entry["mean"] if entry else None
        out[f"{name}_std"] = entry["std"] if entry else None
    out["share_brain_mass_below_0_5"] = overall.get("share_brain_mass_below_0_5")
    corr = np.asarray(rank_corr, dtype=np.float64)
    out["randomisation_rank_corr"] = float(corr.mean()) if corr.size else None
    out["randomisation_rank_corr_std"] = float(corr.std()) if corr.size else None
    out["randomisation_images"] = int(corr.size)
    out["per_class"] = {c: _stats([r for r in rows if r.label == k]) for k, c in enumerate(classes)}
    out["correct"] = _stats([r for r in rows if r.label == r.predicted])
    out["incorrect"] = _stats([r for r in rows if r.label != r.predicted])
    return out
