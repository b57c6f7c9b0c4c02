"""Padding values and a mislabelled sign are read as what they mean (PS3.3 C.7.5.1.1.2)."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from dicom_io.stored_values import SIGN_NOTE, fill_padding, padding_mask, unsigned_if_wrapped


def _head(size: int = 64, peak: float = 250.0) -> np.ndarray:
    """A smooth bright disc on a zero background."""
    y, x = np.mgrid[:size, :size]
    r = np.hypot(y - size / 2, x - size / 2) / (size / 2.5)
    return np.where(r < 1, peak * (1.0 - 0.5 * r**2), 0.0)


def test_padding_pixels_become_the_darkest_real_value() -> None:
    stored = np.where(_head() > 0, _head(), 65535).astype(np.uint16)
    ds = Dataset()
    ds.PixelPaddingValue = 65535
    mask = padding_mask(stored, ds)
    assert mask is not None and mask.sum() == int((_head() == 0).sum())
    out = fill_padding(stored.astype(np.float32), mask, "MONOCHROME2")
    assert out.max() < 300 and out[0, 0] == out[~mask].min()
    # MONOCHROME1 shows its maximum darkest: padding takes that, before the inversion.
    assert fill_padding(stored.astype(np.float32), mask, "MONOCHROME1")[0, 0] == out[~mask].max()
    # A range: every stored value between the padding value and the limit is padding.
    ds.PixelPaddingValue, ds.PixelPaddingRangeLimit = 65535, 65000
    ranged = stored.copy()
    ranged[0, :4] = 65100
    ranged_mask = padding_mask(ranged, ds)
    assert ranged_mask is not None and ranged_mask[0, :4].all()
    assert padding_mask(stored, Dataset()) is None


def test_unsigned_data_labelled_signed_are_read_unsigned() -> None:
    # An 8-bit export whose header kept PixelRepresentation 1: tissue above 127 wraps.
    truth = np.round(_head(peak=250.0)).astype(np.uint8)
    ds = Dataset()
    ds.PixelRepresentation, ds.BitsStored = 1, 8
    frame, note = unsigned_if_wrapped(truth.view(np.int8), ds)
    assert note == SIGN_NOTE
    assert np.array_equal(frame, truth)


def test_genuinely_signed_data_are_left_signed() -> None:
    # A signed 16-bit MR image with a negative background (and negative noise) is smoother
    # signed: its unsigned reading would jump by nearly 65536 at the head's edge.
    rng = np.random.default_rng(0)
    signed = (_head(peak=900.0) - 1000 + rng.normal(0, 5, (64, 64))).astype(np.int16)
    ds = Dataset()
    ds.PixelRepresentation, ds.BitsStored = 1, 16
    frame, note = unsigned_if_wrapped(signed, ds)
    assert note is None and frame is signed
    noisy = np.clip(_head(peak=900.0) + rng.normal(0, 5, (64, 64)), -20, None).astype(np.int16)
    assert unsigned_if_wrapped(noisy, ds)[1] is None
