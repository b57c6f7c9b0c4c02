"""The evidence the series rule (inference.aggregation) reads, gathered from one analysed
series: per-slice probabilities, head area and signal, OOD and out-of-scope scores from the
classifier, and where each slice's Grad-CAM lies (share inside the brain, centroid).

The rule's Grad-CAM gate reads plain Grad-CAM whatever maps are shown (``with_gate_map``),
so what a user asks to see never changes a decision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from dicom_io.series import Series
from explain.quality import cam_location
from inference.aggregation import SliceEvidence
from inference.bundle import Classifier, Prediction
from inference.preprocessing import Preprocessed

# The maps the series rule's Grad-CAM gate can read, in order of preference.
GATE_METHODS = ("gradcam", "gradcampp")


def with_gate_map(methods: Sequence[str]) -> tuple[str, ...]:
    """``methods`` and Grad-CAM, which the series rule's Grad-CAM gate reads
    (inference.aggregation), unless Grad-CAM or Grad-CAM++ is among them: the decision
    does not depend on the maps shown. Grad-CAM costs no pass of its own (its logits are the
    prediction; with saliency or gradcam-gxi it comes from their pass)."""
    if any(m in GATE_METHODS for m in methods):
        return tuple(methods)
    return (*methods, GATE_METHODS[0])


def slice_evidence(
    series: Series, prepared: Sequence[Preprocessed], pred: Prediction, clf: Classifier
) -> SliceEvidence:
    area = np.array(
        [
            p.head_fraction * s.rows * s.columns
            for p, s in zip(prepared, series.slices, strict=True)
        ],
        np.float32,
    )
    threshold = clf.ood.threshold if clf.ood is not None else float("inf")
    scope_threshold = clf.scope.threshold if clf.scope is not None else 0.5
    return SliceEvidence(
        probs=pred.probs,
        head_area=area,
        position=slice_positions(series),
        ood_score=pred.ood_score,
        ood_threshold=threshold,
        plane=series.plane,
        in_scope=pred.in_scope,
        scope_threshold=scope_threshold,
        signal=np.array([p.signal for p in prepared], np.float32),
    )


def slice_positions(series: Series) -> NDArray[np.float32]:
    """Positions along the slice normal in mm whenever the reader knows them (from
    ImagePositionPatient, or rebuilt from SliceLocation or InstanceNumber x SliceThickness):
    the series rule's spans, e.g. "10 mm", are then millimetres. Otherwise slice indices (the
    rule then counts slices). The reader sorts inferior (or right, anterior) first."""
    pos = series.positions
    if series.sorted_by == "instance number" or any(p is None for p in pos):
        return np.arange(len(pos), dtype=np.float32)
    mm = np.asarray(pos, dtype=np.float64)
    if len(mm) > 1 and not np.all(np.diff(mm) > 0):
        return np.arange(len(pos), dtype=np.float32)
    return mm.astype(np.float32)


def cam_evidence(
    maps: NDArray[np.float32], prepared: Sequence[Preprocessed]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Per slice: Grad-CAM share inside the brain and its centroid (see cam_location)."""
    rows = [cam_location(m, p.head_mask) for m, p in zip(maps, prepared, strict=True)]
    inside = np.array([r[0] for r in rows], np.float32)
    centroid = np.array([r[1] for r in rows], np.float32).reshape(len(rows), 2)
    return inside, centroid
