"""Overlays, colour map, 16-bit raw PNGs and burned-in text."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from explain.rendering import (
    add_text,
    apply_colormap,
    colormap_lut,
    overlay,
    raw_png16,
    read_png16,
    to_png,
)
from vocabulary.errors import InputError


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


def test_lut_is_perceptual_inferno() -> None:
    lut = colormap_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    lum = _luminance(lut)
    assert np.all(np.diff(lum) > -1.0)  # lightness rises monotonically (no rainbow)
    assert lum[0] < 10 and lum[-1] > 200  # near black to light yellow
    assert tuple(apply_colormap(np.array([0.0, 1.0]))[1]) == tuple(lut[-1])


def test_overlay_shape_blend_and_colorbar() -> None:
    grey = np.full((64, 80), 0.5, np.float32)
    heat = np.zeros((64, 80), np.float32)
    heat[:, 40:] = 1.0
    plain = overlay(grey, heat, colorbar=False)
    assert plain.shape == (64, 80, 3) and plain.dtype == np.uint8
    assert _luminance(plain[:, 60]).mean() > _luminance(plain[:, 10]).mean()
    with_bar = overlay(grey, heat)
    assert with_bar.shape[0] == 64 and with_bar.shape[1] > 80
    np.testing.assert_array_equal(with_bar[:, :80], plain)
    only_grey = overlay(grey, heat, alpha=0.0, colorbar=False)
    assert np.all(only_grey == 128)


def test_overlay_resizes_a_small_heatmap() -> None:
    rgb = overlay(np.zeros((40, 40)), np.eye(5), colorbar=False)
    assert rgb.shape == (40, 40, 3)
    assert _luminance(rgb[0, 0]) > _luminance(rgb[0, 39])
    with pytest.raises(InputError):
        overlay(np.zeros((4, 4, 3)), np.zeros((4, 4)))


def test_raw_png16_round_trip() -> None:
    m = np.linspace(-0.2, 3.0, 32 * 24, dtype=np.float32).reshape(32, 24)
    data = raw_png16(m)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.mode.startswith("I;16") and im.size == (24, 32)
        arr = np.asarray(im)
    assert arr.min() == 0 and arr.max() == 65535
    np.testing.assert_allclose(read_png16(data), m, atol=3.2 / 65535)
    const = read_png16(raw_png16(np.full((8, 8), 2.0)))
    np.testing.assert_allclose(const, 2.0)


def test_add_text_burns_in_only_the_corner() -> None:
    rgb = np.full((200, 300, 3), 128, np.uint8)
    out = add_text(rgb, ["RESEARCH USE — NOT FOR DIAGNOSIS", "model 1.2.3"])
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (out[:40, :200] != 128).any()
    np.testing.assert_array_equal(out[120:, :], rgb[120:, :])
    assert (rgb == 128).all()  # input untouched
    with pytest.raises(InputError):
        add_text(np.zeros((10, 10)), ["x"])


def test_to_png_decodes() -> None:
    rgb = overlay(np.random.default_rng(0).random((32, 32)), np.ones((32, 32)))
    with Image.open(io.BytesIO(to_png(rgb))) as im:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), rgb)
