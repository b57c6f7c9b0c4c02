"""Reading the shared DICOM data and the files we must refuse (CT, localizer, SR, truncated)."""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_io.reader import ReaderOptions, read_bytes, read_paths
from dicom_io.series_selection import load_rules, select_series
from tests.shared_data import DICOM

DATA = DICOM


def shared(name: str) -> Path:
    p = DATA / name
    if not p.exists():
        pytest.skip(f"shared DICOM data not available: {p}")
    return p


def _copy(src: Path, dst: Path, **changes: object) -> Path:
    ds = pydicom.dcmread(src)
    for k, v in changes.items():
        setattr(ds, k, v)
    ds.save_as(dst, enforce_file_format=True)
    return dst


@pytest.mark.parametrize(
    ("folder", "counts"),
    [
        ("pgbm-001-t1post", [24]),
        ("tcga-fg-6692", [26, 26, 26, 26]),
        ("normal-t1w-axial", [128]),
        ("normal-t1-sagittal", [35]),
    ],
)
def test_shared_series_read_sorted_and_selected(folder: str, counts: list[int]) -> None:
    result = read_paths([shared(folder)])
    assert result.rejected == []
    assert sorted(len(s) for s in result.series) == counts
    for s in result.series:
        pos = np.asarray(s.positions, dtype=float)
        assert s.sorted_by == "position" and np.all(np.diff(pos) > 0)
        assert all("PixelData" not in sl.dataset for sl in s.slices)
        assert all(sl.pixels.dtype == np.float32 and sl.pixels.ndim == 2 for sl in s.slices)
        sel = select_series(s, load_rules(None))
        assert sel.selected, f"{s.series_description}: {sel.reason}"
    if folder == "normal-t1-sagittal":
        assert result.series[0].plane == "sagittal"


def test_every_transfer_syntax_decoded_or_refused() -> None:
    folder = shared("transfer-syntaxes")
    files = sorted(folder.glob("*.dcm"))
    reference = pydicom.dcmread(files[0]).pixel_array.astype(np.float32)
    decoded = 0
    for f in files:
        ts = pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID
        result = read_paths([f])
        if result.rejected:
            assert "transfer syntax" in result.rejected[0].reason, (ts.name, result.rejected)
            continue
        (series,) = result.series
        assert np.array_equal(series.slices[0].pixels, reference), ts.name  # all lossless
        decoded += 1
    assert decoded == len(files) == 9
    mosaic = read_paths([folder]).series[0]
    assert mosaic.is_mosaic
    sel = select_series(mosaic)
    assert not sel.selected and "MOSAIC" in sel.reason


def test_unsupported_codec_is_refused(tmp_path: Path) -> None:
    src = shared("pgbm-001-t1post") / "1-01.dcm"
    ds = pydicom.dcmread(src)
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(
        "1.2.840.10008.1.2.4.100"
    )  # MPEG2: no image decoder
    ds.save_as(tmp_path / "mpeg.dcm", enforce_file_format=True)
    result = read_paths([tmp_path / "mpeg.dcm"])
    assert result.series == []
    assert "transfer syntax" in result.rejected[0].reason


def test_ct_localizer_sr_truncated_and_junk_are_skipped(tmp_path: Path) -> None:
    src = sorted(shared("pgbm-001-t1post").glob("*.dcm"))
    ct_series, loc_series = generate_uid(), generate_uid()
    for i, f in enumerate(src[:8]):
        _copy(
            f,
            tmp_path / f"ct{i}.dcm",
            SOPClassUID="1.2.840.10008.5.1.4.1.1.2",
            Modality="CT",
            SeriesInstanceUID=ct_series,
            SOPInstanceUID=generate_uid(),
        )
    for i, f in enumerate(src[:3]):
        _copy(
            f,
            tmp_path / f"loc{i}.dcm",
            ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
            SeriesInstanceUID=loc_series,
            SOPInstanceUID=generate_uid(),
        )
    sr = pydicom.dcmread(src[0], stop_before_pixels=True)
    sr.SOPClassUID = pydicom.uid.UID("1.2.840.10008.5.1.4.1.1.88.11")  # Basic Text SR
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
    sr.Modality = "SR"
    sr.SOPInstanceUID = generate_uid()
    sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    data = src[1].read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (tmp_path / "header-only.dcm").write_bytes(data[:300])
    (tmp_path / "notes.txt").write_text("not a DICOM file\n")

    result = read_paths([tmp_path, tmp_path / "missing"])
    reasons = {Path(r.path).name: r.reason for r in result.rejected}
    assert "no pixel data" in reasons["sr.dcm"]
    assert "truncated" in reasons["truncated.dcm"] or "length" in reasons["truncated.dcm"]
    assert reasons["header-only.dcm"] and reasons["notes.txt"]
    assert reasons["missing"] == "no such file or folder"
    by_uid = {s.series_instance_uid: s for s in result.series}
    ct = select_series(by_uid[ct_series])
    loc = select_series(by_uid[loc_series])
    assert not ct.selected and "modality CT" in ct.reason
    assert not loc.selected and "localizer" in loc.reason


def test_rescale_is_applied_and_size_limit_refuses(tmp_path: Path) -> None:
    src = shared("pgbm-001-t1post") / "1-05.dcm"
    raw = pydicom.dcmread(src).pixel_array.astype(np.float32)
    f = _copy(src, tmp_path / "r.dcm", RescaleSlope=2.5, RescaleIntercept=-10)
    (series,) = read_paths([f]).series
    assert np.allclose(series.slices[0].pixels, raw * 2.5 - 10)
    small = read_paths([f], ReaderOptions(max_frame_pixels=1000))
    assert small.series == [] and "too large" in small.rejected[0].reason


@pytest.mark.parametrize("implicit", [True, False])
def test_bare_data_set_without_file_meta_is_read(tmp_path: Path, implicit: bool) -> None:
    # Old archives and some exports write the data set alone: no preamble, no File Meta
    # Information, so no Transfer Syntax UID. It can only be native; the parser's VR and
    # byte order say which (PS3.5 A.1, A.2).
    src = shared("pgbm-001-t1post") / "1-07.dcm"
    ds = pydicom.dcmread(src)
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_dataset(fp, ds)
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(fp.getvalue())
    result = read_paths([bare])
    assert result.rejected == []
    (series,) = result.series
    assert np.array_equal(series.slices[0].pixels, ds.pixel_array.astype(np.float32))


def test_padding_and_a_mislabelled_sign_are_read_as_meant(tmp_path: Path) -> None:
    src = shared("pgbm-001-t1post") / "1-07.dcm"
    ds = pydicom.dcmread(src)
    raw = ds.pixel_array.astype(np.int64)
    # Background stored as the padding value 65535 (PS3.3 C.7.5.1.1.2).
    padded = np.where(raw == 0, 65535, raw).astype(np.uint16)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 0
    ds.PixelData = padded.tobytes()
    ds.add_new("PixelPaddingValue", "US", 65535)
    ds.save_as(tmp_path / "padded.dcm")
    (series,) = read_paths([tmp_path / "padded.dcm"]).series
    pixels = series.slices[0].pixels
    assert pixels.max() == raw.max() and np.all(pixels[raw == 0] == raw[raw > 0].min())
    # An 8-bit export that kept PixelRepresentation 1: read unsigned, and said.
    ds = pydicom.dcmread(src)
    eight = np.clip(raw * 255.0 / np.percentile(raw, 99.5), 0, 255).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 1
    ds.PixelData = eight.tobytes()
    ds.save_as(tmp_path / "eight.dcm")
    (series,) = read_paths([tmp_path / "eight.dcm"]).series
    assert np.array_equal(series.slices[0].pixels, eight.astype(np.float32))
    assert series.notes == (
        "PixelRepresentation says signed but the values are unsigned: read as unsigned "
        "(1 of 1 slices)",
    )


def test_values_above_bits_stored_are_kept_and_said(tmp_path: Path) -> None:
    # The header says 12 bits but the 16-bit words hold values up to 3x more: a decoder keeps
    # 12 bits and the image becomes noise. With no overlay in the high bits, all 16 are read.
    src = shared("pgbm-001-t1post") / "1-07.dcm"
    ds = pydicom.dcmread(src)
    big = (ds.pixel_array.astype(np.int64) * 3).clip(0, 65535).astype(np.uint16)
    assert big.max() > 4095
    ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = big.tobytes(), 12, 11, 0
    ds.save_as(tmp_path / "wide.dcm")
    (series,) = read_paths([tmp_path / "wide.dcm"]).series
    assert np.array_equal(series.slices[0].pixels, big.astype(np.float32))
    assert series.notes == (
        "stored values exceed BitsStored: read with every allocated bit (1 of 1 slices)",
    )
    # Values within BitsStored: nothing changes, nothing is said.
    (plain,) = read_paths([src]).series
    assert plain.notes == ()


def test_read_bytes_matches_read_paths() -> None:
    f = shared("pgbm-001-t1post") / "1-07.dcm"
    a = read_bytes(f.read_bytes(), "upload").series[0].slices[0]
    b = read_paths([f]).series[0].slices[0]
    assert a.sop_instance_uid == b.sop_instance_uid and np.array_equal(a.pixels, b.pixels)
    junk = read_bytes(b"\x00" * 50, "junk")
    assert junk.series == [] and junk.rejected[0].path == "junk"


def test_enhanced_mr_is_split_into_frames() -> None:
    files = sorted(shared("pgbm-001-t1post").glob("*.dcm"))
    single = read_paths(files).series[0]
    mf = hd.legacy.LegacyConvertedEnhancedMRImage(
        [pydicom.dcmread(f) for f in files],
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    buf = io.BytesIO()
    mf.save_as(buf, enforce_file_format=True)
    (series,) = read_bytes(buf.getvalue(), "enhanced").series
    assert series.is_multiframe and len(series) == 24
    assert sorted(sl.frame_number or 0 for sl in series.slices) == list(range(1, 25))
    for a, b in zip(single.slices, series.slices, strict=True):
        assert np.allclose(a.image_position, b.image_position)  # type: ignore[arg-type]
        assert np.array_equal(a.pixels, b.pixels)
        assert b.pixel_spacing == a.pixel_spacing
    assert select_series(series).selected


def _series_with_a_repeat(tmp: Path, **changes: object) -> tuple[list[float], Path]:
    """pgbm-001 copied with its 11th slice stored once more under a new SOP Instance UID."""
    files = sorted(shared("pgbm-001-t1post").glob("*.dcm"))
    for f in files:
        (tmp / f.name).write_bytes(f.read_bytes())
    uid = generate_uid()
    ds = pydicom.dcmread(files[10])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    for k, v in changes.items():
        setattr(ds, k, v)
    ds.save_as(tmp / "repeat.dcm", enforce_file_format=True)
    original = read_paths([shared("pgbm-001-t1post")]).series[0]
    return [float(p) for p in original.positions], tmp


@pytest.mark.parametrize("number", [None, 100])
def test_a_slice_stored_twice_is_read_once_with_its_geometry(
    tmp_path: Path, number: int | None
) -> None:
    # The same image under a new SOP Instance UID (same or another InstanceNumber) must
    # neither make the series unassessable nor replace its geometry by made-up positions.
    changes = {} if number is None else {"InstanceNumber": number}
    positions, folder = _series_with_a_repeat(tmp_path, **changes)
    s = read_paths([folder]).series[0]
    assert len(s) == 24 and s.sorted_by == "position"
    assert np.allclose(np.asarray(s.positions, dtype=float), positions)
    assert any("repeating another's position and pixel data ignored" in n for n in s.notes)
    assert select_series(s, load_rules(None)).selected


def test_two_different_images_at_one_position_keep_the_geometry_and_are_refused(
    tmp_path: Path,
) -> None:
    # Another image at an existing position (a repeat acquisition of one slice): the real
    # positions stay (no positions invented from InstanceNumber) and selection says why.
    ds = pydicom.dcmread(sorted(shared("pgbm-001-t1post").glob("*.dcm"))[10])
    pixels = ds.pixel_array.copy()
    pixels[:10] = 0
    positions, folder = _series_with_a_repeat(
        tmp_path, InstanceNumber=100, PixelData=pixels.tobytes()
    )
    s = read_paths([folder]).series[0]
    assert len(s) == 25 and s.sorted_by == "position"
    assert sorted(set(np.round(np.asarray(s.positions, dtype=float), 2))) == sorted(
        set(np.round(positions, 2))
    )
    sel = select_series(s, load_rules(None))
    assert not sel.selected and "distinct positions" in sel.reason
