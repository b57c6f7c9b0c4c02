"""Noisy linear imputation of removed pixels (ROAD, explain.imputation)."""

from __future__ import annotations

import numpy as np
import pytest

from explain.imputation import linear_imputation
from vocabulary.errors import InputError


def _ramp(size: int = 24) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return ((0.3 * rows + 0.7 * cols) / (size + 1)).astype(np.float32)


def test_a_linear_ramp_is_imputed_exactly_not_with_a_constant() -> None:
    image = _ramp()
    removed = np.zeros(image.shape, bool)
    removed[5:15, 3:20] = True  # a block away from the border
    removed[18, 18] = removed[20, 4] = True
    out = linear_imputation(image, removed)
    np.testing.assert_allclose(out, image, atol=1e-5)
    assert np.ptp(out[removed]) > 0.3  # the neighbours' values, not one fill value
    assert (out[~removed] == image[~removed]).all()


def test_one_removed_pixel_is_the_weighted_mean_of_its_eight_neighbours() -> None:
    image = np.zeros((3, 3), np.float32)
    image[0, 1] = 6.0  # direct neighbour, weight 1/6
    image[2, 2] = 12.0  # diagonal neighbour, weight 1/12
    removed = np.zeros((3, 3), bool)
    removed[1, 1] = True
    # weights sum to 4/6 + 4/12 = 1: (6/6 + 12/12) / 1 = 2
    assert linear_imputation(image, removed)[1, 1] == pytest.approx(2.0, abs=1e-5)


def test_noise_touches_only_removed_pixels_and_all_removed_gives_the_mean() -> None:
    image = _ramp()
    removed = np.zeros(image.shape, bool)
    removed[4:20, 4:20] = True
    noisy = linear_imputation(image, removed, 0.05, np.random.default_rng(1))
    assert (noisy[~removed] == image[~removed]).all()
    assert np.std(noisy[removed] - image[removed]) == pytest.approx(0.05, rel=0.2)
    every = linear_imputation(image, np.ones(image.shape, bool))
    np.testing.assert_allclose(every, image.mean(), atol=1e-6)
    with pytest.raises(InputError):
        linear_imputation(image, removed[:5])
