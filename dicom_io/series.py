"""Decoded MR slices grouped into series, with their patient geometry.

Geometry follows DICOM PS3.3 C.7.6.2 (Image Plane Module): the slice normal is the cross
product of the row and column direction cosines of ImageOrientationPatient, and a slice's
position along the normal is ImagePositionPatient (its top-left pixel centre) dotted with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

Vector3 = tuple[float, float, float]
Orientation = tuple[float, float, float, float, float, float]

# |component| of the normal above which a plane counts as axial/sagittal/coronal (< 30 deg).
STANDARD_PLANE_COSINE = 0.866
MR_IMAGE_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
    }
)


def slice_normal(orientation: Orientation) -> Vector3:
    """Unit normal (row x column) of an ImageOrientationPatient value."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    n = np.cross(row, col)
    norm = float(np.linalg.norm(n))
    if norm < 1e-6:
        raise ValueError("ImageOrientationPatient row and column directions are parallel")
    n /= norm
    return float(n[0]), float(n[1]), float(n[2])


def plane_of(orientation: Orientation | None) -> str:
    """'axial', 'sagittal', 'coronal', 'oblique' or 'unknown' from the slice normal."""
    if orientation is None:
        return "unknown"
    try:
        n = np.abs(np.asarray(slice_normal(orientation)))
    except ValueError:
        return "unknown"
    axis = int(np.argmax(n))
    if n[axis] < STANDARD_PLANE_COSINE:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]  # patient x = L, y = P, z = S


# Per plane, the patient axis (x = L, y = P, z = S) and direction the image's rows and
# columns should run along for the usual display (PS3.3 C.7.6.2.1.1): axial with anterior
# up and the patient's left on the image's right, coronal and sagittal with superior up.
_UPRIGHT = {"axial": (0, 1, 1, 1), "coronal": (0, 1, 2, -1), "sagittal": (1, 1, 2, -1)}


def upright_turns(orientation: Orientation | None, plane: str) -> tuple[bool, bool, bool]:
    """(transpose, flip upside down, flip left-right) that bring an image stored with
    ``orientation`` to the usual display of its plane; no turn for obliques or unknowns.

    Most scanners store that way already; a prone, decubitus or feet-first acquisition, or
    a reformat, may store the head upside down or on its side, which the classifier was
    never trained on (it saw left-right flips and small rotations only).
    """
    if orientation is None or plane not in _UPRIGHT:
        return False, False, False
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:], dtype=np.float64)
    row_axis, row_sign, col_axis, col_sign = _UPRIGHT[plane]
    transpose = int(np.argmax(np.abs(row))) == col_axis and int(np.argmax(np.abs(col))) == row_axis
    if transpose:
        row, col = col, row
    if int(np.argmax(np.abs(row))) != row_axis or int(np.argmax(np.abs(col))) != col_axis:
        return False, False, False
    return transpose, bool(col[col_axis] * col_sign < 0), bool(row[row_axis] * row_sign < 0)


@dataclass(frozen=True, eq=False)
class Slice:
    """One 2-D image (a single-frame instance or one frame of a multi-frame instance)."""

    sop_instance_uid: str
    sop_class_uid: str
    pixels: NDArray[np.float32]  # (rows, columns), Modality LUT / rescale applied
    dataset: Dataset  # header without PixelData (shared by the frames of one instance)
    image_position: Vector3 | None = None
    image_orientation: Orientation | None = None
    pixel_spacing: tuple[float, float] | None = None  # (row spacing, column spacing) mm
    slice_thickness: float | None = None
    frame_number: int | None = None  # 1-based for multi-frame instances, else None
    instance_number: int | None = None
    position_mm: float | None = None  # along the series normal; set by the reader
    notes: tuple[str, ...] = ()  # what the reader found unsound in this image and coped with

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def columns(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def key(self) -> tuple[str, int]:
        return self.sop_instance_uid, self.frame_number or 0


@dataclass(frozen=True, eq=False)
class Series:
    """The decoded slices of one series, sorted along the slice normal (inferior first)."""

    study_instance_uid: str
    series_instance_uid: str
    modality: str
    series_description: str
    header: Dataset  # first instance's header without PixelData
    slices: tuple[Slice, ...]
    normal: Vector3 | None = None
    sorted_by: str = "position"  # "position" or "instance number"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.slices)

    @property
    def plane(self) -> str:
        return plane_of(self.slices[0].image_orientation if self.slices else None)

    @property
    def upright_turns(self) -> tuple[bool, bool, bool]:
        """See ``upright_turns``; from the first slice (selection requires one orientation)."""
        return upright_turns(self.slices[0].image_orientation if self.slices else None, self.plane)

    @property
    def planes(self) -> frozenset[str]:
        return frozenset(plane_of(s.image_orientation) for s in self.slices)

    @property
    def image_type(self) -> tuple[str, ...]:
        value = self.header.get("ImageType")
        if value is None:
            fg = _first_item(self.header, "SharedFunctionalGroupsSequence")
            frame_type = _first_item(fg, "MRImageFrameTypeSequence") if fg else None
            value = frame_type.get("FrameType") if frame_type is not None else None
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else list(value)
        return tuple(str(v).strip().upper() for v in items)

    @property
    def is_mosaic(self) -> bool:
        """Siemens mosaic: many EPI slices tiled into one image (ImageType contains MOSAIC)."""
        return "MOSAIC" in self.image_type

    @property
    def is_multiframe(self) -> bool:
        return any(s.frame_number is not None for s in self.slices)

    @property
    def shape(self) -> tuple[int, int] | None:
        """(rows, columns) if every slice has the same size, else None."""
        shapes = {(s.rows, s.columns) for s in self.slices}
        return shapes.pop() if len(shapes) == 1 else None

    @property
    def positions(self) -> list[float | None]:
        return [s.position_mm for s in self.slices]

    @property
    def spacing_between_slices(self) -> float | None:
        """Median distance between adjacent slice positions (mm), if known."""
        pos = [p for p in self.positions if p is not None]
        if len(pos) < 2:
            return None
        return float(np.median(np.abs(np.diff(np.asarray(pos)))))

    @property
    def sop_class_uids(self) -> frozenset[str]:
        return frozenset(s.sop_class_uid for s in self.slices)

    def volume(self) -> NDArray[np.float32]:
        """(N, rows, columns) stack; raises ValueError if slice sizes differ."""
        if self.shape is None:
            raise ValueError(f"series {self.series_instance_uid} has slices of different sizes")
        return np.stack([s.pixels for s in self.slices])


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    seq = ds.get(keyword)
    return seq[0] if seq else None
