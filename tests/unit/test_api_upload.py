"""Upload sniffing and decoding (bytes in memory only)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from explain.options import DEFAULT_METHODS
from plugin.analysis import display_image
from plugin.api.predict import (
    UnsupportedMediaType,
    decode_upload,
    request_methods,
)
from vocabulary.errors import InputError


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_png_and_jpeg_are_sniffed_not_named() -> None:
    grey = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    png = decode_upload(_encode(grey, "PNG"), "photo.jpg")
    assert png.kind == "png" and png.pixels.shape == (64, 64)
    assert np.array_equal(png.pixels, grey)
    rgb = np.stack([grey] * 3, axis=-1)
    jpg = decode_upload(_encode(rgb, "JPEG"), "scan.png")
    assert jpg.kind == "jpeg" and jpg.pixels.shape == (64, 64, 3)


def test_sixteen_bit_png_keeps_its_range() -> None:
    arr = (np.arange(40 * 40).reshape(40, 40) * 40).astype(np.uint16)
    out = decode_upload(_encode(arr, "PNG"), "x")
    assert out.pixels.max() == arr.max() and out.pixels.max() > 255


def test_unknown_and_empty_content() -> None:
    with pytest.raises(UnsupportedMediaType):
        decode_upload(b"GIF89a" + bytes(100), "a.png")
    with pytest.raises(InputError, match="empty"):
        decode_upload(b"", "a.png")


def test_parse_methods() -> None:
    assert request_methods(None) == DEFAULT_METHODS[:1]  # the first measured default
    assert request_methods(" , ") == DEFAULT_METHODS[:1]
    assert request_methods(" Saliency, gradcam ,saliency") == ("saliency", "gradcam")
    with pytest.raises(InputError, match="nope"):
        request_methods("gradcam,nope")


def test_display_image_is_windowed_and_bounded() -> None:
    img = np.linspace(0, 4000, 1024 * 800, dtype=np.float32).reshape(1024, 800)
    out = display_image(img, 512)
    assert out.shape == (512, 400)
    assert out.min() == 0.0 and out.max() == 1.0
