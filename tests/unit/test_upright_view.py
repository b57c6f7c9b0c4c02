"""Images stored upside down or on their side reach the model upright, and maps go back."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from dicom_io.series import Orientation, upright_turns
from inference.preprocessing import View, preprocess

UPRIGHT = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}
TURNS = list(itertools.product([False, True], repeat=3))


def _phantom() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((40, 30), np.float32)
    img[5:35, 4:26] = 1.0 + rng.random((30, 22), dtype=np.float32)
    return img


def _stored(
    img: np.ndarray, row: np.ndarray, col: np.ndarray, turns: tuple[bool, ...]
) -> tuple[np.ndarray, Orientation]:
    """The image as a scanner might store it (turned), with its ImageOrientationPatient."""
    transpose, flip_rows, flip_columns = turns
    if transpose:
        img, row, col = img.T, col, row
    if flip_rows:
        img, col = img[::-1], -col
    if flip_columns:
        img, row = img[:, ::-1], -row
    return np.ascontiguousarray(img), _orientation(row, col)


def _orientation(
    row: Sequence[float] | np.ndarray, col: Sequence[float] | np.ndarray
) -> Orientation:
    r, c = [float(v) for v in row], [float(v) for v in col]
    return r[0], r[1], r[2], c[0], c[1], c[2]


@pytest.mark.parametrize("plane", sorted(UPRIGHT))
@pytest.mark.parametrize("turns", TURNS)
def test_every_stored_turn_is_brought_upright(plane: str, turns: tuple[bool, ...]) -> None:
    upright = _phantom()
    row, col = (np.asarray(v) for v in UPRIGHT[plane])
    stored, orientation = _stored(upright, row, col, turns)
    view = View(*upright_turns(orientation, plane))
    assert np.array_equal(view.apply(stored), upright)
    assert np.array_equal(view.undo(view.apply(stored)), stored)


def test_usual_and_oblique_orientations_are_not_turned() -> None:
    for plane, (row, col) in UPRIGHT.items():
        assert upright_turns(_orientation(row, col), plane) == (False, False, False)
    assert upright_turns((1.0, 0.0, 0.0, 0.0, 0.7, -0.7), "oblique") == (False, False, False)
    assert upright_turns(None, "axial") == (False, False, False)


def test_a_turned_image_gives_the_same_input_and_its_map_comes_back_turned() -> None:
    upright = _phantom()
    row, col = (np.asarray(v) for v in UPRIGHT["sagittal"])
    stored, orientation = _stored(upright, row, col, (True, True, False))
    view = View(*upright_turns(orientation, "sagittal"))
    a, b = preprocess(upright), preprocess(stored, view=view)
    assert np.array_equal(a.image, b.image)
    heat = np.zeros_like(a.image)
    heat[10:20, 30:50] = 1.0
    back = b.to_source(heat)
    assert back.shape == stored.shape
    assert np.allclose(view.apply(back), a.to_source(heat))
