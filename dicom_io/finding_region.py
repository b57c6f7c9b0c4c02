"""Where on an image a report's result points: a closed outline on the deciding slice.

A TID 1500 viewer lists a measurement group by the image region it refers to (OHIF's
``@ohif/extension-cornerstone-dicom-sr`` places each group on the image that a SCOORD in it
references, and fails to show a report with a group that has none). Each group of our report
therefore carries, on its first numeric measurement, a PS3.16 TID 300 "INFERRED FROM"
TID 320 SCOORD: a closed POLYLINE around the head on the series' most confident assessed
slice (the slice whose own model output for the series' class is highest), SELECTED FROM
that image (PS3.3 C.18.6: SCOORD Graphic Data are column/row pairs in the image's pixel
matrix, the top left corner of the top left pixel at 0.0/0.0).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from numpy.typing import NDArray

from dicom_io.series import Series, Slice
from vocabulary.decisions import INDETERMINATE, SeriesDecision

FOREGROUND_FRACTION = 0.1  # of the slice's 1st-99th percentile range: above it is "head"


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


def outline(sl: Slice) -> hd.sr.CoordinatesForMeasurement:
    """A closed POLYLINE around the head on ``sl``, INFERRED FROM for a TID 300 measurement."""
    c0, r0, c1, r1 = foreground_box(sl.pixels)
    corners = [(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)]  # closed: last = first
    source = hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=sl.sop_class_uid,
        referenced_sop_instance_uid=sl.sop_instance_uid,
        referenced_frame_numbers=[sl.frame_number] if sl.frame_number is not None else None,
    )
    return hd.sr.CoordinatesForMeasurement(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.asarray(corners, dtype=np.float64),
        source_image=source,
    )


def series_outline(series: Series, decision: SeriesDecision) -> hd.sr.CoordinatesForMeasurement:
    """The outline on the series' deciding slice (its middle slice when none was assessed)."""
    index = deciding_slice(decision)
    return outline(series.slices[len(series) // 2 if index is None else index])
