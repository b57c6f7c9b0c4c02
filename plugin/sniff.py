"""Content sniffing: decide what an uploaded or given file is from its bytes, not its name."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from dicom_io.reader import read_bytes
from dicom_io.series_selection import single_image_refusal
from vocabulary.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def kind_of(data: bytes) -> str:
    """'png', 'jpeg', 'dicom' or 'unknown' from magic bytes (DICOM: 'DICM' at 128, PS3.10)."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    return "unknown"


def decode_raster(data: bytes) -> NDArray[Any]:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            keep = opened.mode in ("L", "RGB", "I;16", "I")
            return np.asarray(opened if keep else opened.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot decode image: {exc}") from exc


def load_any_bytes(data: bytes, name: str = "upload") -> list[NDArray[Any]]:
    """Decode PNG/JPEG (one image) or DICOM (one image per slice/frame)."""
    kind = kind_of(data)
    if kind in ("png", "jpeg"):
        return [decode_raster(data)]
    if kind == "dicom":
        result = read_bytes(data, name)
        images = [s.pixels for series in result.series for s in series.slices]
        if not images:
            why = "; ".join(r.reason for r in result.rejected) or "no image data"
            raise InputError(f"DICOM file not usable: {why}")
        return images
    raise InputError("unsupported file type: expected PNG, JPEG or DICOM (PS3.10 file)")


@dataclass(frozen=True)
class LoadedImage:
    """One image to classify on its own, and why it must get no class (None: it may)."""

    pixels: NDArray[Any]
    refusal: str | None = None


def load_images(path: Path) -> list[LoadedImage]:
    """``load_any_image`` with each DICOM image's single-image refusal (dicom_io)."""
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    data = path.read_bytes()
    if kind_of(data) != "dicom":
        return [LoadedImage(p) for p in load_any_bytes(data, path.name)]
    result = read_bytes(data, path.name)
    out = [
        LoadedImage(s.pixels, single_image_refusal(series))
        for series in result.series
        for s in series.slices
    ]
    if not out:
        why = "; ".join(r.reason for r in result.rejected) or "no image data"
        raise InputError(f"DICOM file not usable: {why}")
    return out


def load_any_image(path: Path) -> list[NDArray[Any]]:
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    return load_any_bytes(path.read_bytes(), path.name)
