"""The outline a report group points at: the deciding slice and the head's bounding box."""

from __future__ import annotations

import numpy as np

from dicom_io.finding_region import deciding_series, deciding_slice, foreground_box
from vocabulary.decisions import SeriesDecision, SliceDecision

PROBS = {"glioma": 0.5, "meningioma": 0.1, "notumor": 0.1, "pituitary": 0.3}


def series_decision(label: str, slices: list[tuple[bool, str, float]]) -> SeriesDecision:
    decided = tuple(SliceDecision(i, ok, "", p, v) for i, (ok, p, v) in enumerate(slices))
    return SeriesDecision(label, "", dict(PROBS), decided, {})


def test_the_deciding_slice_is_the_most_confident_assessed_slice_of_the_class() -> None:
    d = series_decision(
        "glioma",
        [(True, "glioma", 0.7), (False, "glioma", 0.99), (True, "pituitary", 0.95),
         (True, "glioma", 0.8), (True, "glioma", 0.6)],
    )  # fmt: skip
    assert deciding_slice(d) == 3  # not 1 (not assessed), not 2 (another class)


def test_indeterminate_and_unassessed_series() -> None:
    d = series_decision("indeterminate", [(True, "glioma", 0.5), (True, "pituitary", 0.9)])
    assert deciding_slice(d) == 1
    assert deciding_slice(series_decision("indeterminate", [(False, "glioma", 0.9)])) is None


def test_the_deciding_series_carries_the_study_class() -> None:
    weak = series_decision("glioma", [(True, "glioma", 0.6)])
    other = series_decision("pituitary", [(True, "pituitary", 0.99)])
    strong = series_decision("glioma", [(True, "glioma", 0.9)])
    assert deciding_series([weak, other, strong], "glioma") == 2
    assert deciding_series([other, weak], "indeterminate") == 0


def test_foreground_box_bounds_the_head() -> None:
    pixels = np.zeros((20, 30), np.float32)
    pixels[4:15, 7:21] = 100.0
    pixels[0, 0] = np.nan
    assert foreground_box(pixels) == (7, 4, 21, 15)
    assert foreground_box(np.full((8, 6), 3.0, np.float32)) == (0, 0, 6, 8)
