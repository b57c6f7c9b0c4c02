"""A research volume (RAS+ voxel array) as a plain MR Image Storage series.

For checking the series/study rule on volumes that exist only as NIfTI: each plane is cut
in viewer orientation (see ``inference.real_volumes.plane_slice``) and written with the
geometry of PS3.3 C.7.6.2 (ImageOrientationPatient in LPS, ImagePositionPatient of the
first transmitted pixel), 12-bit unsigned pixels, and ImageType DERIVED\\SECONDARY so no
one mistakes it for an acquisition. The affine is assumed axis-aligned (RAS+ canonical).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

# Display slice -> RAS voxel: (row cosine, column cosine) in LPS and the first pixel's voxel.
_PLANES = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
}
_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


@dataclass(frozen=True)
class VolumeSeriesOptions:
    plane: str = "axial"
    series_description: str = "research volume"
    study_uid: str = ""
    patient_id: str = "ANON"
    body_part: str = "HEAD"
    contrast_agent: str = ""  # e.g. "GADOLINIUM" for T1 post-contrast
    series_number: int = 1


def export_volume(
    slices: Sequence[NDArray[np.float32]],
    zooms: tuple[float, float, float],
    shape: tuple[int, int, int],
    out_dir: Path,
    opts: VolumeSeriesOptions,
) -> list[Path]:
    """Write the display slices of one plane (in volume index order) as DICOM files."""
    row_cos, col_cos = _PLANES[opts.plane]
    axis = _AXIS[opts.plane]
    in_plane = [k for k in range(3) if k != axis]
    # Row spacing runs down the columns, column spacing along the rows.
    spacing = (zooms[2], zooms[in_plane[0]]) if opts.plane != "axial" else (zooms[1], zooms[0])
    stack = np.stack(slices).astype(np.float64)
    hi = float(np.percentile(stack, 99.9)) or 1.0
    pixels = np.clip(stack / hi * 4095.0, 0, 4095).astype(np.uint16)
    study = opts.study_uid or generate_uid()
    series = generate_uid()
    frame = generate_uid()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    # RAS voxel (i, j, k) -> LPS mm with the volume centred at the origin.
    centre = (np.asarray(shape, np.float64) - 1) / 2 * np.asarray(zooms)
    for n, img in enumerate(pixels):
        first = np.asarray(shape, np.float64) - 1
        first[axis] = n
        if opts.plane != "axial":
            first[2] = shape[2] - 1
        ras = first * np.asarray(zooms) - centre
        ipp = (-ras[0], -ras[1], ras[2])
        ds = _instance(img, opts, study, series, frame, n)
        ds.ImageOrientationPatient = [*row_cos, *col_cos]
        ds.ImagePositionPatient = [round(float(v), 4) for v in ipp]
        ds.PixelSpacing = [round(spacing[0], 4), round(spacing[1], 4)]
        ds.SliceThickness = round(zooms[axis], 4)
        normal = np.cross(np.asarray(row_cos), np.asarray(col_cos))
        ds.SliceLocation = round(float(np.dot(np.asarray(ipp), normal)), 4)
        path = out_dir / f"{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _instance(
    img: NDArray[np.uint16], opts: VolumeSeriesOptions, study: str, series: str, frame: str, n: int
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.Modality = "MR"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.PatientPosition = "HFS"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "", "", ""
    ds.PatientName, ds.PatientID = opts.patient_id, opts.patient_id
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "", "", "", ""
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "research volume"
    ds.SeriesDescription = opts.series_description
    ds.SeriesNumber, ds.InstanceNumber = opts.series_number, n + 1
    ds.BodyPartExamined = opts.body_part
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
    ds.MRAcquisitionType = "3D"
    if opts.contrast_agent:
        ds.ContrastBolusAgent = opts.contrast_agent
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = img.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.ascontiguousarray(img).tobytes()
    return ds
