"""The outline a report group points at: the deciding slice and the head's bounding box."""

from __future__ import annotations

import numpy as np

from dicom_io.finding_region import (
    MAX_POINTS,
    deciding_series,
    deciding_slice,
    foreground_box,
    top_region,
)
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


def test_top_region_outlines_the_largest_top_blob_closed() -> None:
    relevance = np.zeros((40, 50), np.float32)
    yy, xx = np.mgrid[:40, :50]
    relevance += np.exp(-((yy - 12) ** 2 + (xx - 35) ** 2) / (2 * 4.0**2))  # the peak
    relevance += 0.3 * np.exp(-((yy - 30) ** 2 + (xx - 8) ** 2) / (2 * 3.0**2))
    points = top_region(relevance)
    assert points is not None
    assert points[0].tolist() == points[-1].tolist()  # closed (PS3.3 C.18.6.1.2)
    assert 4 <= len(points) <= MAX_POINTS + 1
    cols, rows = points[:, 0], points[:, 1]
    assert cols.min() < 35.5 < cols.max() and rows.min() < 12.5 < rows.max()  # peak inside
    assert cols.min() > 25 and rows.max() < 22  # only the peak's blob, not the weaker one
    top = relevance >= np.quantile(relevance[relevance > 0], 0.9)
    area = 0.5 * abs(np.dot(cols, np.roll(rows, 1)) - np.dot(rows, np.roll(cols, 1)))
    assert 0.5 * top.sum() < area < 1.5 * top.sum()  # about the top 10 % of the pixels


def test_top_region_at_the_border_and_of_an_empty_map() -> None:
    relevance = np.zeros((20, 20), np.float32)
    relevance[0:4, 16:20] = 1.0  # the corner: the outline is closed inside the image
    points = top_region(relevance)
    assert points is not None and points[0].tolist() == points[-1].tolist()
    assert points.min() >= 0.0 and points[:, 0].max() <= 20.0 and points[:, 1].max() <= 20.0
    assert points[:, 0].max() > 19.0 and points[:, 1].min() < 0.5
    assert top_region(np.zeros((8, 8), np.float32)) is None
    assert top_region(np.full((8, 8), np.nan, np.float32)) is None
