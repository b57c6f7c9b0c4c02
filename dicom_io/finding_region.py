"""Where on an image a report's result points: a region on the deciding slice.

A TID 1500 viewer lists a measurement group by the image region it refers to (OHIF's
``@ohif/extension-cornerstone-dicom-sr`` places each group on the image that a SCOORD in it
references, and fails to show a report with a group that has none). Each group of our report
therefore carries, on its first numeric measurement, a PS3.16 TID 300 "INFERRED FROM"
TID 320 SCOORD on the series' most confident assessed slice (the slice whose own model output
for the series' class is highest), SELECTED FROM that image (PS3.3 C.18.6: SCOORD Graphic
Data are column/row pairs in the image's pixel matrix, the top left corner of the top left
pixel at 0.0/0.0). The regions differ per group, so the viewer's labels do not pile up:

- study result: a closed POLYLINE around the head (its bounding box);
- series result: a POINT on the head's midline a quarter down from its top (OHIF writes the
  study outline's label at its right edge half-way down, and a point's label beside it);
- an explanation method: a closed POLYLINE around the top of its attribution map on that slice
  (the largest connected region of the top 10 % of its positive relevance), the head outline
  when the map is empty there.

A closed 2D outline is a POLYLINE whose last point repeats the first (PS3.3 C.18.6.1.2;
POLYGON is a 3D SCOORD graphic type).
"""

from __future__ import annotations

from collections.abc import Sequence

import contourpy
import highdicom as hd
import numpy as np
from numpy.typing import NDArray

from dicom_io.series import Series, Slice
from vocabulary.decisions import INDETERMINATE, SeriesDecision
from vocabulary.errors import InputError

FOREGROUND_FRACTION = 0.1  # of the slice's 1st-99th percentile range: above it is "head"
TOP_FRACTION = 0.1  # of a map's positive pixels: its top region
MAX_POINTS = 64  # of an attribution outline (the contour is resampled to at most this many)


def deciding_slice(decision: SeriesDecision) -> int | None:
    """Index of the assessed slice whose own output for the series' class is the most
    confident; for an indeterminate series, the most confident assessed slice; None when no
    slice was assessed."""
    assessed = [s for s in decision.slices if s.eligible]
    voting = [s for s in assessed if s.predicted == decision.label]
    pool = voting if decision.label != INDETERMINATE and voting else assessed
    return max(pool, key=lambda s: s.probability).index if pool else None


def deciding_series(decisions: Sequence[SeriesDecision], study_label: str) -> int:
    """Index of the series that carries the study's class with the most confident slice
    (the first series when none does, e.g. an indeterminate study)."""
    best, best_p = 0, -1.0
    for i, d in enumerate(decisions):
        if d.label != study_label:
            continue
        top = max((s.probability for s in d.slices if s.eligible and s.predicted == d.label),
                  default=0.0)  # fmt: skip
        if top > best_p:
            best, best_p = i, top
    return best


def foreground_box(pixels: NDArray[np.float32]) -> tuple[int, int, int, int]:
    """(first column, first row, end column, end row) of the pixels above the foreground
    threshold; the whole image when none is above it."""
    rows, cols = pixels.shape
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return 0, 0, cols, rows
    low, high = np.percentile(finite, [1.0, 99.0])
    mask = np.nan_to_num(pixels, nan=low) > low + FOREGROUND_FRACTION * (high - low)
    if high <= low or not mask.any():
        return 0, 0, cols, rows
    r = np.flatnonzero(mask.any(axis=1))
    c = np.flatnonzero(mask.any(axis=0))
    return int(c[0]), int(r[0]), int(c[-1]) + 1, int(r[-1]) + 1


def _source(sl: Slice) -> hd.sr.SourceImageForRegion:
    return hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=sl.sop_class_uid,
        referenced_sop_instance_uid=sl.sop_instance_uid,
        referenced_frame_numbers=[sl.frame_number] if sl.frame_number is not None else None,
    )


def _scoord(
    sl: Slice, kind: hd.sr.GraphicTypeValues, points: NDArray[np.float64]
) -> hd.sr.CoordinatesForMeasurement:
    return hd.sr.CoordinatesForMeasurement(
        graphic_type=kind, graphic_data=points, source_image=_source(sl)
    )


def outline(sl: Slice) -> hd.sr.CoordinatesForMeasurement:
    """A closed POLYLINE around the head on ``sl``, INFERRED FROM for a TID 300 measurement."""
    c0, r0, c1, r1 = foreground_box(sl.pixels)
    corners = [(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)]  # closed: last = first
    return _scoord(sl, hd.sr.GraphicTypeValues.POLYLINE, np.asarray(corners, dtype=np.float64))


def centre(sl: Slice) -> hd.sr.CoordinatesForMeasurement:
    """A POINT on the head's midline on ``sl``, a quarter of its height down from its top."""
    c0, r0, c1, r1 = foreground_box(sl.pixels)
    point = np.asarray([[(c0 + c1) / 2.0, r0 + (r1 - r0) / 4.0]], dtype=np.float64)
    return _scoord(sl, hd.sr.GraphicTypeValues.POINT, point)


def top_region(relevance: NDArray[np.float32]) -> NDArray[np.float64] | None:
    """Closed outline (column, row pairs, PS3.3 C.18.6.1.2 pixel coordinates) of the largest
    connected region of the top ``TOP_FRACTION`` of the map's positive pixels; None when the
    map has no positive finite value.

    Contours are traced with contourpy (marching squares, through the centres of the
    region's edge pixels) on the map padded by one zero pixel, so a region touching the
    border is closed too; the last point repeats the first.
    """
    m = np.nan_to_num(np.asarray(relevance, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    positive = m[m > 0]
    if positive.size == 0:
        return None
    # just below the quantile, so pixels equal to it (a flat top) are inside
    level = float(np.nextafter(np.quantile(positive, 1.0 - TOP_FRACTION), -np.inf))
    padded = np.pad(m, 1)
    lines = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate)
    closed = [np.asarray(c) for c in lines.lines(level) if len(c) >= 4]
    if not closed:
        return None
    best = max(closed, key=_area)
    keep = np.unique(np.linspace(0, len(best) - 1, min(len(best), MAX_POINTS)).round().astype(int))
    points = best[keep] - 0.5  # padding (-1) and pixel centres at +0.5
    rows, cols = m.shape
    points = np.clip(points, 0.0, [float(cols), float(rows)])
    return np.vstack([points[:-1], points[:1]]) if len(points) > 3 else None


def _area(points: NDArray[np.float64]) -> float:
    """Area enclosed by a closed outline (shoelace formula)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def attention_outline(sl: Slice, relevance: NDArray[np.float32]) -> hd.sr.CoordinatesForMeasurement:
    """A closed POLYLINE around the top of ``relevance`` (on the grid of ``sl``), or the head
    outline when the map has no top region there."""
    if relevance.shape != (sl.rows, sl.columns):
        raise InputError(f"map shape {relevance.shape} != slice {(sl.rows, sl.columns)}")
    points = top_region(relevance)
    if points is None:
        return outline(sl)
    return _scoord(sl, hd.sr.GraphicTypeValues.POLYLINE, points)


def deciding_index(series: Series, decision: SeriesDecision) -> int:
    """The deciding slice of the series (its middle slice when none was assessed)."""
    index = deciding_slice(decision)
    return len(series) // 2 if index is None else index


def series_outline(series: Series, decision: SeriesDecision) -> hd.sr.CoordinatesForMeasurement:
    """The head outline on the series' deciding slice."""
    return outline(series.slices[deciding_index(series, decision)])
