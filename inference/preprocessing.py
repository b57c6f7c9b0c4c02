"""The one preprocessing function shared by training, evaluation and DICOM inference.

Steps: to grey, crop to the head's foreground, pad to square, resize, and a robust
percentile normalisation computed on the head, so that an 8-bit windowed JPEG and a
12-16-bit DICOM slice land in the same [0, 1] range.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from scipy import ndimage

from vocabulary.errors import InputError

FloatArray = NDArray[np.float32]

MAX_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings stored with the model so inference repeats training exactly."""

    image_size: int = 160
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    mask_threshold: float = 0.1
    margin_fraction: float = 0.04

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class View:
    """Turns that bring a stored image to the orientation the model was trained on (the
    head upright: anterior or superior at the top), applied in this order: transpose, flip
    upside down, flip left-right. The identity for images already stored that way."""

    transpose: bool = False
    flip_rows: bool = False
    flip_columns: bool = False

    def apply(self, image: NDArray[Any]) -> NDArray[Any]:
        out = np.swapaxes(image, 0, 1) if self.transpose else image
        out = out[::-1] if self.flip_rows else out
        out = out[:, ::-1] if self.flip_columns else out
        return np.ascontiguousarray(out)

    def undo(self, image: FloatArray) -> FloatArray:
        out = image[:, ::-1] if self.flip_columns else image
        out = out[::-1] if self.flip_rows else out
        out = np.swapaxes(out, 0, 1) if self.transpose else out
        return np.ascontiguousarray(out)


@dataclass(frozen=True)
class Preprocessed:
    """A model-ready image plus what is needed to map results back to the source."""

    image: FloatArray  # (size, size) in [0, 1]
    source_shape: tuple[int, int]  # of the image as turned by ``view``
    crop_box: tuple[int, int, int, int]  # y0, y1, x0, x1 in source pixels (exclusive ends)
    square_side: int
    pad: tuple[int, int]  # rows, columns added before the crop to make it square
    head_fraction: float  # share of the source image covered by the head mask
    head_mask: NDArray[np.bool_]  # (size, size) head mask in model space
    # Intensity range of the source slice (99.5th percentile above the minimum, minus the
    # minimum): a noise-only end slice of a 3D series has a small fraction of its
    # neighbours' range while its head mask, thresholded on its own range, fills the image.
    signal: float = 1.0
    # How the source was turned before preprocessing (``View``): maps go back through it.
    view: View = View()

    def to_source(self, heatmap: FloatArray) -> FloatArray:
        """Resample a (size, size) map in model space onto the source pixel grid."""
        side = self.square_side
        t = torch.from_numpy(np.ascontiguousarray(heatmap, dtype=np.float32))[None, None]
        square = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)[0, 0]
        y0, y1, x0, x1 = self.crop_box
        py, px = self.pad
        crop = square[py : py + (y1 - y0), px : px + (x1 - x0)].numpy()
        out = np.zeros(self.source_shape, dtype=np.float32)
        out[y0:y1, x0:x1] = crop
        return self.view.undo(out)


def to_grey(image: NDArray[Any]) -> FloatArray:
    """Convert a 2-D grey, (H, W, 3|4) RGB(A) or (H, W, 1) array to float32 grey."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        else:
            rgb = arr[..., :3].astype(np.float32)
            arr = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"expected a 2-D image or RGB image, got shape {tuple(arr.shape)}")
    if arr.shape[0] < 16 or arr.shape[1] < 16:
        raise InputError(f"image too small: {arr.shape[0]}x{arr.shape[1]} (minimum 16x16)")
    if arr.size > MAX_PIXELS:
        raise InputError(f"image too large: {arr.shape[0]}x{arr.shape[1]}")
    out = arr.astype(np.float32, copy=False)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def intensity_range(grey: FloatArray) -> tuple[float, float]:
    """(minimum, 99.5th percentile of the pixels above it); equal on an empty slice."""
    lo = float(grey.min())
    above = grey[grey > lo]
    if above.size < 16:
        return lo, lo
    return lo, float(np.percentile(above, 99.5))


def head_mask(
    grey: FloatArray, threshold: float, value_range: tuple[float, float] | None = None
) -> NDArray[np.bool_]:
    """Largest connected bright region after smoothing, holes filled: the head
    (``value_range``: the slice's ``intensity_range`` when already known)."""
    lo, hi = value_range or intensity_range(grey)
    if hi - lo <= 1e-6:
        return np.zeros(grey.shape, dtype=bool)
    smooth = ndimage.gaussian_filter((grey - lo) / (hi - lo), sigma=2.0)
    mask: NDArray[np.bool_] = np.asarray(smooth > threshold, dtype=bool)
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    return np.asarray(ndimage.binary_fill_holes(largest), dtype=bool)


def _bounding_box(mask: NDArray[np.bool_], margin_fraction: float) -> tuple[int, int, int, int]:
    """Head bounding box grown by a margin proportional to the head's size."""
    h, w = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0, h, 0, w
    extent = max(int(rows[-1] - rows[0]), int(cols[-1] - cols[0])) + 1
    margin = int(round(margin_fraction * extent))
    y0 = max(0, int(rows[0]) - margin)
    y1 = min(h, int(rows[-1]) + 1 + margin)
    x0 = max(0, int(cols[0]) - margin)
    x1 = min(w, int(cols[-1]) + 1 + margin)
    return y0, y1, x0, x1


def preprocess(
    image: NDArray[Any], config: PreprocessConfig | None = None, view: View | None = None
) -> Preprocessed:
    """Turn any 2-D grey or RGB slice into the model's (size, size) float input, first
    turned by ``view`` (the stored orientation to the upright one; maps come back)."""
    cfg = config or PreprocessConfig()
    turn = view or View()
    grey = turn.apply(to_grey(image))
    signal_lo, signal_hi = intensity_range(grey)
    mask = head_mask(grey, cfg.mask_threshold, (signal_lo, signal_hi))
    y0, y1, x0, x1 = _bounding_box(mask, cfg.margin_fraction)
    crop = grey[y0:y1, x0:x1]
    crop_mask = mask[y0:y1, x0:x1]
    values = crop[crop_mask] if crop_mask.sum() >= 64 else crop.ravel()
    lo, hi = np.percentile(values, [cfg.lower_percentile, cfg.upper_percentile])
    if hi - lo <= 1e-6:
        hi = lo + 1.0
    norm = np.clip((crop - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    ch, cw = norm.shape
    side = max(ch, cw)
    py, px = (side - ch) // 2, (side - cw) // 2
    square = np.zeros((side, side), dtype=np.float32)
    square[py : py + ch, px : px + cw] = norm
    square_mask = np.zeros((side, side), dtype=np.float32)
    square_mask[py : py + ch, px : px + cw] = crop_mask
    size = cfg.image_size
    stacked = torch.from_numpy(np.stack([square, square_mask]))[None]
    resized = F.interpolate(stacked, size=(size, size), mode="bilinear", antialias=True)[0]
    return Preprocessed(
        image=resized[0].clamp(0.0, 1.0).numpy().astype(np.float32),
        source_shape=(grey.shape[0], grey.shape[1]),
        crop_box=(y0, y1, x0, x1),
        square_side=side,
        pad=(py, px),
        head_fraction=float(mask.mean()),
        head_mask=resized[1].numpy() > 0.5,
        signal=signal_hi - signal_lo,
        view=turn,
    )
