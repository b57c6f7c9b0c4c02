"""Stored pixel values that do not mean what they seem: padding and a mislabelled sign.

Two header facts change how stored values must be read before the Modality LUT / rescale,
and real archives get both wrong or ignore them:

- **Pixel Padding Value** (0028,0120), with an optional Pixel Padding Range Limit
  (0028,0121), marks pixels outside the imaged region (PS3.3 C.7.5.1.1.2). Often the
  largest stored value (65535): read as signal it is the brightest thing in the image, the
  head mask finds the background and the model sees a negative of the head. Padding
  pixels are given the darkest real value instead.
- **Bits Stored** (0028,0101) smaller than the values written: a decoder keeps only the
  stored bits (PS3.5 8.1.1), so values above 2^BitsStored wrap and the image is noise. When
  the native pixel data hold such values and no overlay shares the pixel bits (the retired
  use of the high bits, PS3.3 C.9.2.1.1), every allocated bit is pixel data.
- **Pixel Representation** (0028,0103) 1 (signed) on data that are unsigned, as an 8-bit
  export of a signed 16-bit series may keep it: every value above half the range wraps
  to a negative one and bright tissue turns black. The reading that keeps the image
  continuous is the right one: when the unsigned reading of the stored bits has less total
  variation than the signed one, the data are read as unsigned and the series notes say
  so. Wrapped tissue jumps by nearly the whole range wherever it crosses half of it; a
  genuinely signed MR image (a negative background, negative noise) makes the same jumps
  only in its unsigned reading, at every edge between negative and positive values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

NATIVE = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)

SIGN_NOTE = "PixelRepresentation says signed but the values are unsigned: read as unsigned"
BITS_NOTE = "stored values exceed BitsStored: read with every allocated bit"


def padding_mask(frame: NDArray[Any], ds: Dataset) -> NDArray[np.bool_] | None:
    """Pixels holding the padding value (or range), None when the header declares none."""
    pad = ds.get("PixelPaddingValue")
    if pad is None or pad == "":
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    values = np.asarray(frame)
    if limit is None or limit == "":
        return np.asarray(values == int(pad), dtype=bool)
    lo, hi = sorted((int(pad), int(limit)))
    return np.asarray((values >= lo) & (values <= hi), dtype=bool)


def fill_padding(
    out: NDArray[np.float32], mask: NDArray[np.bool_] | None, photometric: str
) -> NDArray[np.float32]:
    """Padding pixels set to the value displayed darkest among the real ones (the minimum,
    or the maximum for MONOCHROME1, whose minimum is white: PS3.3 C.7.6.3.1.2)."""
    if mask is None or not mask.any() or mask.all():
        return out
    real = out[~mask]
    out = out.copy()
    out[mask] = real.max() if photometric == "MONOCHROME1" else real.min()
    return out


def unsigned_if_wrapped(frame: NDArray[Any], ds: Dataset) -> tuple[NDArray[Any], str | None]:
    """The frame read as unsigned when its sign is mislabelled, and the note saying so."""
    if int(ds.get("PixelRepresentation", 0) or 0) != 1:
        return frame, None
    values = np.asarray(frame).astype(np.int64)
    if values.min() >= 0:
        return frame, None
    bits = int(ds.get("BitsStored", 0) or 0) or 8 * np.asarray(frame).dtype.itemsize
    unsigned = values & ((1 << bits) - 1)
    if _variation(unsigned) < _variation(values):
        return unsigned, SIGN_NOTE
    return frame, None


def _variation(values: NDArray[np.int64]) -> float:
    """Total variation (sum of absolute differences of neighbouring pixels)."""
    return float(np.abs(np.diff(values, axis=0)).sum() + np.abs(np.diff(values, axis=1)).sum())


def widen_bits_stored(ds: Dataset) -> str | None:
    """Set BitsStored to BitsAllocated when native unsigned pixel data exceed BitsStored."""
    allocated = int(ds.get("BitsAllocated", 0) or 0)
    stored = int(ds.get("BitsStored", 0) or 0)
    if (
        "PixelData" not in ds
        or allocated not in (16, 32)
        or not 0 < stored < allocated
        or int(ds.get("PixelRepresentation", 0) or 0) != 0
        or ds.file_meta.get("TransferSyntaxUID") not in NATIVE
        or any(0x6000 <= elem.tag.group <= 0x601E for elem in ds)
    ):
        return None
    order = ">" if ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian else "<"
    raw = np.frombuffer(ds.PixelData, dtype=f"{order}u{allocated // 8}")
    if raw.size == 0 or int(raw.max()) < (1 << stored):
        return None
    ds.BitsStored, ds.HighBit = allocated, allocated - 1
    return BITS_NOTE
