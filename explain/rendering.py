"""Overlays with a perceptual colour map and colour bar, 16-bit raw PNGs, burned-in text.

The colour map is matplotlib's 'inferno' (perceptually uniform, monotonic in lightness,
readable in grey) sampled once into a 256-entry lookup table; pyplot is never used.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from vocabulary.errors import InputError

RGB = NDArray[np.uint8]
COLORMAP = "inferno"
_FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
)


@cache
def colormap_lut(name: str = COLORMAP) -> RGB:
    """(256, 3) uint8 lookup table of a matplotlib colour map."""
    from matplotlib import colormaps  # the registry only; no pyplot, no backend

    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def apply_colormap(values: NDArray[Any], name: str = COLORMAP) -> RGB:
    """Map values in [0, 1] to RGB through the lookup table."""
    idx = np.round(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).astype(np.intp)
    lut: RGB = colormap_lut(name)
    return np.asarray(lut[idx], dtype=np.uint8)


def _resize(heatmap: NDArray[Any], shape: tuple[int, int]) -> NDArray[np.float32]:
    h = np.asarray(heatmap, dtype=np.float32)
    if h.shape == shape:
        return h
    t = torch.from_numpy(np.ascontiguousarray(h))[None, None]
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def _grey_rgb(grey: NDArray[Any]) -> NDArray[np.float32]:
    g = np.clip(np.nan_to_num(np.asarray(grey, dtype=np.float32)), 0.0, 1.0)
    return np.repeat(g[..., None], 3, axis=2)


def overlay(
    grey: NDArray[Any],
    heatmap: NDArray[Any],
    alpha: float = 0.45,
    colorbar: bool = True,
    colormap: str = COLORMAP,
) -> RGB:
    """Blend a [0, 1] heatmap over a [0, 1] grey image; optional colour bar on the right.

    The heatmap is resized to the image if needed. Returns uint8 RGB (H, W', 3).
    """
    g = np.asarray(grey)
    if g.ndim != 2:
        raise InputError(f"overlay needs a 2-D grey image, got shape {g.shape}")
    heat = np.clip(_resize(heatmap, (g.shape[0], g.shape[1])), 0.0, 1.0)
    colour = apply_colormap(heat, colormap).astype(np.float32) / 255.0
    blended = (1.0 - alpha) * _grey_rgb(g) + alpha * colour
    rgb = np.round(np.clip(blended, 0.0, 1.0) * 255).astype(np.uint8)
    return _with_colorbar(rgb, colormap) if colorbar else rgb


def _with_colorbar(rgb: RGB, colormap: str) -> RGB:
    h, w = rgb.shape[:2]
    gap, bar = max(2, w // 64), max(6, w // 24)
    font = text_font(max(8, h // 24))
    label_w = int(font.getlength("high")) + 2 * gap
    strip = np.zeros((h, gap + bar + label_w, 3), dtype=np.uint8)
    margin = max(1, h // 32)
    ramp = np.linspace(1.0, 0.0, h - 2 * margin)[:, None].repeat(bar, axis=1)
    strip[margin : h - margin, gap : gap + bar] = apply_colormap(ramp, colormap)
    img = Image.fromarray(strip)
    draw = ImageDraw.Draw(img)
    x = gap + bar + gap
    draw.text((x, margin), "high", fill=(255, 255, 255), font=font)
    draw.text((x, h - margin), "low", fill=(255, 255, 255), font=font, anchor="ld")
    return np.concatenate([rgb, np.asarray(img)], axis=1)


@cache
def text_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (system or matplotlib's copy), else Pillow's default font."""
    candidates = list(_FONT_CANDIDATES)
    try:
        import matplotlib

        candidates.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
    except ImportError:
        pass
    for path in candidates:
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def display_window(grey: NDArray[Any]) -> NDArray[np.float32]:
    """A grey image scaled to [0, 1] for display: the 0.5-99.5 percentile window."""
    g = np.asarray(grey, dtype=np.float32)
    lo, hi = np.percentile(g, [0.5, 99.5])
    out: NDArray[np.float32] = np.clip((g - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    return out.astype(np.float32)


def add_text(rgb: NDArray[Any], lines: list[str] | tuple[str, ...], size: int = 0) -> RGB:
    """Burn lines of text into the top-left corner on a dark box (readable on any image).

    ``size`` 0 scales the font with the image height (at least 9 px).
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"add_text needs an RGB image, got shape {arr.shape}")
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    font = _fitting_font(draw, lines, size or max(9, arr.shape[0] // 28), arr.shape[1] - 4)
    pad, y = 2, 2
    for line in lines:
        left, top, right, bottom = draw.textbbox((pad, y), line, font=font)
        draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=(0, 0, 0))
        draw.text((pad, y), line, fill=(255, 255, 255), font=font)
        y = int(bottom) + 2 * pad
    return np.asarray(img, dtype=np.uint8).copy()


def _fitting_font(
    draw: ImageDraw.ImageDraw, lines: list[str] | tuple[str, ...], size: int, width: int
) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The largest font up to ``size`` (at least 6 px) in which every line fits ``width``."""
    while True:
        font = text_font(size)
        widest = max((draw.textlength(line, font=font) for line in lines), default=0.0)
        if widest <= width or size <= 6:
            return font
        size -= 1


def raw_png16(attribution_map: NDArray[Any]) -> bytes:
    """The map as a 16-bit grey PNG, min..max -> 0..65535; tEXt chunks hold min and max."""
    m = np.nan_to_num(np.asarray(attribution_map, dtype=np.float64))
    if m.ndim != 2:
        raise InputError(f"raw_png16 needs a 2-D map, got shape {m.shape}")
    lo, hi = float(m.min()), float(m.max())
    scaled = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    arr = np.round(scaled * 65535).astype(np.uint16)
    info = PngInfo()
    info.add_text("brainxai:min", repr(lo))
    info.add_text("brainxai:max", repr(hi))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_png16(data: bytes) -> NDArray[np.float64]:
    """Inverse of ``raw_png16``: the map in its original units (to 1/65535 of its range)."""
    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im, dtype=np.float64)
        lo = float(im.info.get("brainxai:min", 0.0))
        hi = float(im.info.get("brainxai:max", 65535.0))
    return lo + arr / 65535.0 * (hi - lo)


def to_png(rgb: NDArray[Any]) -> bytes:
    """PNG bytes of a uint8 RGB image."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
