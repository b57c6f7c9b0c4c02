"""A few instances unlike their series are set aside (and said), not the whole series lost."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from dicom_io.reader import assemble
from dicom_io.series import Series
from dicom_io.series_selection import select_series
from tests.unit.test_dicom_selection import AXIAL, CORONAL, SAGITTAL, make_series


def _reassembled(n: int, change: dict[int, dict[str, Any]]) -> Series:
    s = make_series(n=n, BodyPartExamined="BRAIN")
    items = [replace(sl, **change.get(i, {})) for i, sl in enumerate(s.slices)]
    return assemble(items)[0]


def test_a_stray_localizer_is_set_aside_and_noted() -> None:
    series = _reassembled(24, {5: {"image_orientation": SAGITTAL}})
    assert len(series) == 23
    assert series.notes == ("1 of 24 slices set aside: orientation unlike the series' (or none)",)
    sel = select_series(series)
    assert sel.selected and sel.plane == "axial", sel.reason


def test_strays_of_each_kind_are_set_aside() -> None:
    change: dict[int, dict[str, Any]] = {
        0: {"image_orientation": None},
        7: {"pixels": np.zeros((20, 16), np.float32)},
        12: {"image_position": None},
    }
    series = _reassembled(30, change)
    assert len(series) == 27
    assert len(series.notes) == 3
    assert select_series(series).selected


def test_more_than_a_tenth_unlike_the_rest_is_still_refused() -> None:
    # A three-plane localizer, or a series that is half one thing and half another, is not
    # "a few strays": selection refuses it with its reason, as before.
    ors = [AXIAL] * 6 + [CORONAL] * 4
    sel = select_series(make_series(n=10, orientations=ors))
    assert not sel.selected and "mixed orientations" in sel.reason
    change = {i: {"pixels": np.zeros((20, 16), np.float32)} for i in range(3)}
    series = _reassembled(20, change)
    assert len(series) == 20 and series.notes == ()
    assert "rows/columns" in select_series(series).reason
