"""Read DICOM files, folders or bytes into decoded, position-sorted series.

Every file either contributes slices or is listed in ``ReadResult.rejected`` with the
reason; no exception from a malformed file escapes. Pixel values are converted with the
Modality LUT / rescale (PS3.3 C.7.6.16.2.9 for enhanced objects, C.11.1 otherwise). Multi-frame
(Enhanced / Legacy Converted Enhanced MR) instances are split into one slice per frame, with
geometry from the per-frame or shared functional groups (PS3.3 C.7.6.16).
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import UID

from dicom_io.series import Orientation, Series, Slice, Vector3, slice_normal
from dicom_io.stored_values import (
    fill_padding,
    padding_mask,
    unsigned_if_wrapped,
    widen_bits_stored,
)
from dicom_io.stray_slices import set_aside_strays
from vocabulary.errors import DicomError

log = logging.getLogger(__name__)

__all__ = ["ReadResult", "ReaderOptions", "Rejected", "Series", "Slice", "read_bytes", "read_paths"]

# Errors pydicom and its decoder plugins raise on malformed, truncated or odd input.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    struct.error,
    BytesLengthException,  # a binary VR whose value length is not a multiple of its size
    zlib.error,  # file meta says deflated, the data set is not
)
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class ReaderOptions:
    max_frame_pixels: int = 4096 * 4096  # rows x columns of one frame
    max_instance_pixels: int = 100_000_000  # rows x columns x frames of one instance


@dataclass(frozen=True)
class Rejected:
    path: str
    reason: str


@dataclass(frozen=True)
class ReadResult:
    series: list[Series] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class Refused(DicomError):
    """Internal: a file we decline to use, with the reason for the caller."""


def read_paths(paths: Sequence[Path | str], options: ReaderOptions | None = None) -> ReadResult:
    """Read files and (recursively) folders; hidden files and folders are skipped."""
    opts = options or ReaderOptions()
    slices: list[Slice] = []
    rejected: list[Rejected] = []
    for path in _iter_files([Path(p) for p in paths], rejected):
        with path.open("rb") as fp:
            _read_one(fp, str(path), opts, slices, rejected)
    return ReadResult(assemble(slices), rejected)


def read_bytes(data: bytes, name: str, options: ReaderOptions | None = None) -> ReadResult:
    """Read one DICOM file held in memory (e.g. an upload or a C-STORE payload)."""
    slices: list[Slice] = []
    rejected: list[Rejected] = []
    _read_one(io.BytesIO(data), name, options or ReaderOptions(), slices, rejected)
    return ReadResult(assemble(slices), rejected)


def _iter_files(paths: Sequence[Path], rejected: list[Rejected]) -> Iterator[Path]:
    for p in paths:
        if p.is_file():
            yield p
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if f.is_file() and not any(part.startswith(".") for part in rel):
                    yield f
        else:
            rejected.append(Rejected(str(p), "no such file or folder"))


def _read_one(
    fp: BinaryIO, name: str, opts: ReaderOptions, out: list[Slice], rejected: list[Rejected]
) -> None:
    try:
        ds = _parse(fp)
        _materialise(ds)
        out.extend(decode_instance(ds, opts))
    except Refused as exc:
        rejected.append(Rejected(name, str(exc)))
        log.info("refused %s: %s", name, exc)
    except DECODE_ERRORS as exc:
        reason = f"malformed or truncated DICOM ({type(exc).__name__}: {exc})"
        rejected.append(Rejected(name, reason[:300]))
        log.info("refused %s: %s", name, reason[:300])


def _materialise(ds: Dataset) -> None:
    """Convert every raw element now (pydicom converts lazily), pixel data aside.

    A value that cannot be converted (a binary VR of the wrong length, a damaged sequence)
    then refuses this file here, with a reason, instead of failing later in selection,
    geometry or the writers, far from the file it came from.
    """
    for elem in ds.iterall():
        if elem.keyword in PIXEL_KEYWORDS:
            continue
        _ = elem.value


def _parse(fp: BinaryIO) -> Dataset:
    try:
        ds = pydicom.dcmread(fp)
    except InvalidDicomError:
        fp.seek(0)
        ds = pydicom.dcmread(fp, force=True)  # no preamble: accepted if it looks like DICOM
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            raise Refused("not a DICOM file") from None
        _infer_transfer_syntax(ds)
    for kw in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        if not str(ds.get(kw, "") or "").strip():
            raise Refused(f"missing {kw}")
    return ds


def _infer_transfer_syntax(ds: Dataset) -> None:
    """A bare dataset (no preamble, no File Meta Information, as old archives and some
    exports write them) can only be natively encoded, in the VR and byte order the parser
    found; record that as its Transfer Syntax UID (PS3.5 A.1-A.3) so its pixels decode."""
    if "TransferSyntaxUID" in ds.file_meta or ds.original_encoding[0] is None:
        return
    implicit, little = ds.original_encoding
    ts = (
        pydicom.uid.ImplicitVRLittleEndian
        if implicit
        else pydicom.uid.ExplicitVRLittleEndian
        if little
        else pydicom.uid.ExplicitVRBigEndian
    )
    ds.file_meta.TransferSyntaxUID = ts
    log.info("instance %s has no file meta: read as %s", ds.SOPInstanceUID, ts.name)


def decode_instance(ds: Dataset, opts: ReaderOptions | None = None) -> list[Slice]:
    """Decode one parsed instance into slices (one per frame); raises Refused or decode errors."""
    o = opts or ReaderOptions()
    sop_class = UID(str(ds.SOPClassUID))
    if not any(kw in ds for kw in PIXEL_KEYWORDS):
        raise Refused(f"no pixel data: {sop_class.name or sop_class} is not an image")
    _check_size(ds, o)
    _check_decoder(ds)
    widened = widen_bits_stored(ds)
    arr = np.asarray(ds.pixel_array)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        raise Refused("palette colour images are not supported")
    if n_frames == 1:
        arr = arr[None]
    if spp == 3:  # pydicom returns RGB; luminance as in ITU-R BT.601
        arr = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if arr.ndim != 3 or arr.shape[0] != n_frames:
        raise Refused(f"unexpected pixel array shape {arr.shape} for {n_frames} frame(s)")
    header = _strip_pixels(ds)
    slices = []
    for i in range(n_frames):
        frame, note = (arr[i], None) if spp == 3 else unsigned_if_wrapped(arr[i], ds)
        pad = None if spp == 3 else padding_mask(frame, ds)
        pixels = fill_padding(_rescale(frame, ds, i), pad, photometric)
        if photometric == "MONOCHROME1":  # PS3.3 C.7.6.3.1.2: minimum value is white
            pixels = pixels.max() + pixels.min() - pixels
        item = _make_slice(header, np.ascontiguousarray(pixels), i if n_frames > 1 else None)
        notes = tuple(n for n in (widened, note) if n)
        slices.append(replace(item, notes=notes) if notes else item)
    return slices


def _check_size(ds: Dataset, o: ReaderOptions) -> None:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows < 1 or cols < 1:
        raise Refused(f"invalid image size {rows}x{cols}")
    if rows * cols > o.max_frame_pixels:
        raise Refused(f"image too large: {rows}x{cols} (limit {o.max_frame_pixels} pixels)")
    if rows * cols * frames > o.max_instance_pixels:
        raise Refused(f"too many pixels: {frames} frames of {rows}x{cols}")


def _check_decoder(ds: Dataset) -> None:
    if "PixelData" not in ds:
        return  # float pixel data is never encapsulated
    ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise Refused(f"unsupported transfer syntax {ts.name or ts} ({ts})") from None
    if not decoder.is_available:
        raise Refused(f"no decoder installed for transfer syntax {ts.name} ({ts})")


def _strip_pixels(ds: Dataset) -> Dataset:
    for kw in PIXEL_KEYWORDS:
        if kw in ds:
            delattr(ds, kw)
    return ds


def _rescale(frame: NDArray[Any], ds: Dataset, index: int) -> NDArray[np.float32]:
    """Stored values to real ones (Modality LUT, or rescale slope and intercept)."""
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(frame, ds), dtype=np.float32)
    slope, intercept = _slope_intercept(ds, index)
    return np.asarray(frame.astype(np.float32) * np.float32(slope) + np.float32(intercept))


def _slope_intercept(ds: Dataset, index: int) -> tuple[float, float]:
    item = _functional_group(ds, index, "PixelValueTransformationSequence")
    src = item if item is not None else ds
    slope = src.get("RescaleSlope", 1.0)
    intercept = src.get("RescaleIntercept", 0.0)
    return float(slope if slope not in (None, "") else 1.0), float(intercept or 0.0)


def _functional_group(ds: Dataset, index: int, keyword: str) -> Dataset | None:
    """The item of a functional-group macro for one frame: per-frame first, then shared."""
    for group_kw, i in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(group_kw)
        if groups and len(groups) > i:
            seq = groups[i].get(keyword)
            if seq:
                return seq[0]  # type: ignore[no-any-return]
    return None


def _make_slice(ds: Dataset, pixels: NDArray[np.float32], index: int | None) -> Slice:
    if index is None:
        geo: Dataset = ds
        measures: Dataset = ds
    else:
        geo_pos = _functional_group(ds, index, "PlanePositionSequence")
        geo_ori = _functional_group(ds, index, "PlaneOrientationSequence")
        pm = _functional_group(ds, index, "PixelMeasuresSequence")
        geo = Dataset()
        if geo_pos is not None and "ImagePositionPatient" in geo_pos:
            geo.ImagePositionPatient = geo_pos.ImagePositionPatient
        if geo_ori is not None and "ImageOrientationPatient" in geo_ori:
            geo.ImageOrientationPatient = geo_ori.ImageOrientationPatient
        measures = pm if pm is not None else Dataset()
    number = ds.get("InstanceNumber")
    return Slice(
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        pixels=pixels,
        dataset=ds,
        image_position=_floats(geo.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        image_orientation=_floats(geo.get("ImageOrientationPatient"), 6),  # type: ignore[arg-type]
        pixel_spacing=_floats(measures.get("PixelSpacing"), 2),  # type: ignore[arg-type]
        slice_thickness=_float(measures.get("SliceThickness")),
        frame_number=None if index is None else index + 1,
        instance_number=int(number) if number not in (None, "") else None,
    )


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def assemble(slices: Sequence[Slice]) -> list[Series]:
    """Group slices by study and series, drop duplicates and sort them along the normal."""
    groups: dict[tuple[str, str], dict[tuple[str, int], Slice]] = {}
    for s in slices:
        key = (str(s.dataset.StudyInstanceUID), str(s.dataset.SeriesInstanceUID))
        groups.setdefault(key, {}).setdefault(s.key, s)
    return [_build_series(study, series, list(g.values())) for (study, series), g in groups.items()]


def _distinct(values: Sequence[float | None]) -> bool:
    """True when every value is known and no two coincide (to 0.01 mm)."""
    if any(v is None for v in values):
        return False
    rounded = np.round(np.asarray(values, dtype=np.float64), 2)
    return len(np.unique(rounded)) == len(rounded)


def _drop_repeats(items: list[Slice], notes: list[str]) -> list[Slice]:
    """Drop instances that repeat another's position and pixel data under a new SOP Instance
    UID (a slice sent twice, re-exported or re-identified): one of each is kept, the series
    notes say how many were ignored. Different images at one position are left alone."""
    seen: set[tuple[float, bytes]] = set()
    kept: list[Slice] = []
    order = sorted(items, key=lambda s: (s.instance_number or 0, s.sop_instance_uid))
    for s in order:
        if s.position_mm is not None:
            digest = hashlib.blake2b(np.ascontiguousarray(s.pixels).tobytes()).digest()
            mark = (round(s.position_mm, 2), digest)
            if mark in seen:
                continue
            seen.add(mark)
        kept.append(s)
    if len(kept) == len(items):
        return items
    notes.append(
        f"{len(items) - len(kept)} instance(s) repeating another's position and pixel data ignored"
    )
    keys = {s.key for s in kept}
    return [s for s in items if s.key in keys]


def _mostly_distinct(values: Sequence[float | None]) -> bool:
    """True when the known positions are distinct for most slices (at least half), so that a
    few coinciding ones are repeats, not a missing geometry (one position for every slice)."""
    if any(v is None for v in values):
        return False
    rounded = np.round(np.asarray(values, dtype=np.float64), 2)
    return len(np.unique(rounded)) >= max(2, len(rounded) // 2)


def _fallback_positions(
    items: list[Slice], normal: NDArray[np.float64], notes: list[str]
) -> tuple[list[Slice], str]:
    """Positions from SliceLocation, else InstanceNumber x spacing, when IPP is degenerate.

    Some archives write the same ImagePositionPatient on every slice of a series (PS3.3
    C.7.6.2 requires each slice's own). SliceLocation (C.7.6.2.1.2) is then the best
    remaining evidence; InstanceNumber times SliceThickness the last resort. The slices'
    ImagePositionPatient is rebuilt along the normal from the first one, so that derived
    objects get distinct, consistent plane positions; the series notes say so.
    """
    locations = [_float(s.dataset.get("SliceLocation")) for s in items]
    if _distinct(locations):
        source, pos = "SliceLocation", [float(v) for v in locations if v is not None]
    elif _distinct([s.instance_number for s in items]):
        step = items[0].slice_thickness or 1.0
        source = "InstanceNumber x SliceThickness"
        pos = [float(s.instance_number or 0) * step for s in items]
    else:
        notes.append("ImagePositionPatient repeats and no other position: sorted by number")
        items.sort(key=lambda s: (s.instance_number or 0, s.frame_number or 0))
        return items, "instance number"
    notes.append(f"ImagePositionPatient repeats across slices: positions from {source}")
    base = np.asarray(items[0].image_position, dtype=np.float64)
    p0 = pos[0]
    out = []
    for s, p in zip(items, pos, strict=True):
        ipp = base + normal * (p - p0)
        out.append(
            replace(
                s,
                position_mm=float(np.dot(ipp, normal)),
                image_position=(float(ipp[0]), float(ipp[1]), float(ipp[2])),
            )
        )
    return out, source


def canonical_normal(orientation: Orientation) -> Vector3:
    """Slice normal flipped so its dominant component is positive.

    Positions then increase towards patient superior (axial), left (sagittal) or posterior
    (coronal), whatever the direction of the scanner's row/column cosines.
    """
    n = np.asarray(slice_normal(orientation))
    if n[int(np.argmax(np.abs(n)))] < 0:
        n = -n
    return float(n[0]), float(n[1]), float(n[2])


def _build_series(study: str, series_uid: str, items: list[Slice]) -> Series:
    found, total = Counter(note for s in items for note in s.notes), len(items)
    items, notes = set_aside_strays(items)
    notes += [f"{note} ({k} of {total} slices)" for note, k in sorted(found.items())]
    for note in notes:
        log.info("series %s: %s", series_uid, note)
    normal: Vector3 | None = None
    ori = items[0].image_orientation
    if ori is not None and all(s.image_position is not None for s in items):
        try:
            normal = canonical_normal(ori)
        except ValueError:
            notes.append("invalid ImageOrientationPatient")
    sorted_by = "instance number"
    if normal is not None:
        nv = np.asarray(normal)
        items = [
            replace(s, position_mm=float(np.dot(np.asarray(s.image_position), nv))) for s in items
        ]
        positions = [s.position_mm for s in items]
        if _distinct(positions) or len(items) == 1:
            sorted_by = "position"
        elif _mostly_distinct(positions):
            # The geometry is real and a few positions repeat: a slice stored twice is read
            # once; two different images at one position (echoes, a repeat) stay, and series
            # selection refuses the series and says why.
            items, sorted_by = _drop_repeats(items, notes), "position"
        else:
            items, sorted_by = _fallback_positions(items, nv, notes)
    else:
        notes.append("no usable ImagePositionPatient/ImageOrientationPatient: sorted by number")
    if sorted_by == "instance number":
        items.sort(key=lambda s: (s.instance_number or 0, s.frame_number or 0))
    else:
        items.sort(
            key=lambda s: (s.position_mm or 0.0, s.instance_number or 0, s.frame_number or 0)
        )
    header = items[0].dataset
    return Series(
        study_instance_uid=study,
        series_instance_uid=series_uid,
        modality=str(header.get("Modality", "") or ""),
        series_description=str(header.get("SeriesDescription", "") or ""),
        header=header,
        slices=tuple(items),
        normal=normal,
        sorted_by=sorted_by,
        notes=tuple(notes),
    )
