"""Analysing a series in parts (for the progress bar) gives the results of one pass."""

from __future__ import annotations

import numpy as np

from plugin.analysis import classify_and_explain, classify_and_explain_in_parts
from tests.integration.api_support import classifier


def test_parts_give_the_same_prediction_and_maps() -> None:
    clf = classifier()
    size = clf.meta.preprocess.image_size
    yy, xx = np.mgrid[:size, :size] / size
    images = np.stack(
        [np.clip(1 - ((yy - 0.5) ** 2 + (xx - 0.5) ** 2) * (4 + k), 0, 1) for k in range(7)]
    ).astype(np.float32)
    methods = ("gradcam", "saliency")
    whole_pred, whole_maps = classify_and_explain(clf, images, methods)
    seen: list[int] = []
    pred, maps = classify_and_explain_in_parts(clf, images, methods, 3, seen.append)
    assert seen == [3, 6, 7]
    np.testing.assert_allclose(pred.probs, whole_pred.probs, atol=1e-5)
    np.testing.assert_allclose(pred.ood_score, whole_pred.ood_score, rtol=1e-4, atol=1e-4)
    for m in methods:
        np.testing.assert_allclose(maps[m].normalised, whole_maps[m].normalised, atol=1e-4)
        assert (maps[m].targets == whole_maps[m].targets).all()
