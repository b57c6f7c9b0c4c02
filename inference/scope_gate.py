"""Is one image within what the classifier may answer on? The single-image gate.

Checks, in order, each with its reason: a colour image (an overlay, a photo: MR is
grey), too little head in the image, a feature distance above the model's OOD threshold
(unlike the training images), and the out-of-scope detector (skull base, vertex, head
edge). The series rule applies the same gates per slice (``aggregation``); this module is
for uploads and ``predict``, where an answer must say when it should not be trusted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from inference.bundle import Classifier, Prediction
from inference.preprocessing import Preprocessed

MIN_HEAD_FRACTION = 0.08  # share of the image covered by the head mask
COLOUR_CHROMA = 30.0  # max-min over RGB (0-255 scale) for a pixel to count as coloured
COLOUR_SHARE = 0.02  # coloured pixel share above which the image is a colour image
# A single image must be more likely in scope than out: the detector's own threshold is
# set to keep 95 % of in-scope slices of a *series*, whose slices are also excluded by
# their place in the head; a single image has no place, so the gate is stricter
# (measured: 2.9 % of 240 JPEG validation images refused at 0.5, 2.5 % at 0.33).
SINGLE_IMAGE_MIN_SCOPE = 0.5


def colour_share(image: NDArray[Any]) -> float:
    """Share of clearly coloured pixels of an (H, W, 3|4) image; 0 for grey images."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] < 3:
        return 0.0
    rgb = arr[..., :3].astype(np.float32)
    if rgb.max() <= 1.0:
        rgb = rgb * 255.0
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    return float((chroma > COLOUR_CHROMA).mean())


def out_of_scope_reason(
    raw: NDArray[Any], prepared: Preprocessed, pred: Prediction, index: int, clf: Classifier
) -> str | None:
    """Why row ``index`` of ``pred`` (the prediction of ``raw``) should not be trusted."""
    if colour_share(raw) > COLOUR_SHARE:
        return "colour image (an overlay or a photograph), not an MR slice"
    if prepared.head_fraction < MIN_HEAD_FRACTION:
        return f"too little head in the image ({prepared.head_fraction:.0%})"
    if clf.ood is not None and float(pred.ood_score[index]) > clf.ood.threshold:
        return (
            f"unlike the training images (feature distance {float(pred.ood_score[index]):.0f}"
            f" > {clf.ood.threshold:.0f})"
        )
    if pred.in_scope is not None and clf.scope is not None:
        p = float(pred.in_scope[index])
        threshold = max(clf.scope.threshold, SINGLE_IMAGE_MIN_SCOPE)
        if p < threshold:
            return (
                "outside the classifier's scope: looks like skull base, vertex or the edge of "
                f"the head (in-scope probability {p:.2f} < {threshold:.2f})"
            )
    return None
