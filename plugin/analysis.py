"""Classify slices and explain each one for its predicted class, with one trunk pass.

Shared by the DICOM pipeline and the HTTP API. With a CAM method, Grad-CAM's forward pass
yields the logits and pooled features, so the prediction needs no second pass through the
trunk (temperature scaling keeps the argmax, so Grad-CAM's target is the calibrated
prediction). Without one, the prediction comes first and the maps explain its class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from explain.attribution import Attribution, explain
from explain.options import CAM_METHODS, ExplainOptions
from inference.bundle import Classifier, Prediction


def predict_and_explain(
    clf: Classifier,
    images: NDArray[np.float32],
    methods: Sequence[str],
    options: ExplainOptions | None = None,
) -> tuple[Prediction, dict[str, Attribution]]:
    """Prediction and maps of ``images`` (N, S, S) in [0, 1] for each method."""
    cam = next((m for m in methods if m in CAM_METHODS), None)
    if cam is not None:
        maps = explain(clf.net, images, list(methods), None, options)
        first = maps[cam]
        if first.logits is not None and first.pooled is not None:
            return clf.prediction_from(first.logits, first.pooled), maps
    pred = clf.predict(images)
    targets = pred.probs.argmax(axis=1)
    return pred, explain(clf.net, images, list(methods), targets, options)
