"""The one preprocessing function: JPEG and DICOM pixels land on the same tensor."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from inference.preprocessing import PreprocessConfig, preprocess
from vocabulary.errors import InputError


def _phantom(h: int = 120, w: int = 100) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    head = ((yy - h / 2) / (h * 0.4)) ** 2 + ((xx - w / 2) / (w * 0.35)) ** 2 < 1
    img = np.where(head, 120 + (xx % 7) * 10, 0)
    img[50:60, 40:55] = 250
    return img.astype(np.uint8)


def _as_dicom_pixels(pixels: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Round-trip pixels through a real DICOM file with a rescale, as a scanner would store."""
    stored = np.round((pixels.astype(np.float64) - intercept) / slope).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = stored.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    back = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    return back.pixel_array * float(back.RescaleSlope) + float(back.RescaleIntercept)


def test_jpeg_and_dicom_give_the_same_tensor() -> None:
    pixels = _phantom()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    from_png = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    # 12-bit DICOM of the same pixels x16 with an intercept: the tensor must not change.
    from_dicom = _as_dicom_pixels(pixels.astype(np.float64) * 16 + 100, slope=1.0, intercept=100)
    cfg = PreprocessConfig(image_size=64)
    a = preprocess(from_png, cfg).image
    b = preprocess(from_dicom, cfg).image
    assert a.shape == (64, 64) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_rgb_and_grey_agree_and_output_range() -> None:
    grey = _phantom()
    rgb = np.repeat(grey[..., None], 3, axis=2)
    a = preprocess(grey).image
    b = preprocess(rgb).image
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.max() > 0.9


def test_crop_to_head_removes_empty_border() -> None:
    small = np.pad(_phantom(60, 50), 12)
    padded = np.zeros((300, 300), np.uint8)
    padded[88:172, 188:262] = small
    a = preprocess(small, PreprocessConfig(image_size=64)).image
    b = preprocess(padded, PreprocessConfig(image_size=64)).image
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    p = preprocess(padded, PreprocessConfig(image_size=64))
    y0, y1, x0, x1 = p.crop_box
    assert 90 <= y0 <= 105 and 155 <= y1 <= 170 and 190 <= x0 <= 205


def test_to_source_places_map_on_the_source_grid() -> None:
    img = np.zeros((200, 150), np.uint8)
    img[50:150, 30:120] = _phantom(100, 90)
    p = preprocess(img, PreprocessConfig(image_size=64))
    back = p.to_source(np.ones((64, 64), np.float32))
    assert back.shape == (200, 150)
    assert back[0, 0] == 0.0 and back[100, 75] == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [np.zeros((4, 4)), np.zeros((10, 10, 10, 2)), np.zeros((8,))])
def test_bad_shapes_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        preprocess(bad)


def test_blank_image_does_not_crash() -> None:
    out = preprocess(np.zeros((64, 64), np.uint8)).image
    assert np.isfinite(out).all()
