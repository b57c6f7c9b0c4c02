"""Write result objects as DICOM Part 10 files with predictable names.

A file is ``<out_dir>/<kind>/<SOPInstanceUID>.dcm`` with kind ``sc``, ``pm``, ``sr`` (or the
SOP class UID for anything else). UIDs are deterministic (dicom_io/uids.py), so writing the
results of a re-run replaces the earlier files instead of adding new ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from vocabulary.errors import DicomError

log = logging.getLogger(__name__)

KIND_BY_SOP_CLASS = {
    "1.2.840.10008.5.1.4.1.1.7": "sc",  # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.30": "pm",  # Parametric Map Storage
    "1.2.840.10008.5.1.4.1.1.88.33": "sr",  # Comprehensive SR Storage
    "1.2.840.10008.5.1.4.1.1.88.34": "sr",  # Comprehensive 3D SR Storage
    "1.2.840.10008.5.1.4.1.1.88.22": "sr",  # Enhanced SR Storage
}


def object_kind(ds: Dataset) -> str:
    sop_class = str(ds.SOPClassUID)
    return KIND_BY_SOP_CLASS.get(sop_class, sop_class)


def object_path(ds: Dataset, out_dir: Path) -> Path:
    return Path(out_dir) / object_kind(ds) / f"{ds.SOPInstanceUID}.dcm"


def write_dataset(ds: Dataset, out_dir: Path) -> Path:
    """Write one object atomically (temporary file, then rename); returns its path."""
    path = object_path(ds, out_dir)
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(tmp, enforce_file_format=True)
        tmp.replace(path)
    except (OSError, ValueError, AttributeError) as exc:
        tmp.unlink(missing_ok=True)
        raise DicomError(f"cannot write {object_kind(ds)} object to {path}: {exc}") from exc
    log.debug("wrote %s", path)
    return path


def write_datasets(datasets: Iterable[Dataset], out_dir: Path) -> list[Path]:
    return [write_dataset(ds, out_dir) for ds in datasets]


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory so that entries created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder``, then ``folder`` itself."""
    for path in sorted(folder.rglob("*")):
        fsync_path(path)
    fsync_path(folder)


def overlay_pixels(paths: Sequence[str | Path]) -> NDArray[np.uint8] | None:
    """The RGB pixels of the middle Secondary Capture overlay among ``paths`` (files this
    module wrote, so SCs are under ``sc/``), for a preview; None if there is none readable.

    The SC is RGB, 8 bits, PhotometricInterpretation RGB (PS3.3 C.8.6.2, A.8.1).
    """
    overlays = [Path(p) for p in paths if Path(p).parent.name == "sc" and Path(p).is_file()]
    if not overlays:
        return None
    path = overlays[len(overlays) // 2]
    try:
        ds = pydicom.dcmread(path)
        if str(ds.SOPClassUID) != "1.2.840.10008.5.1.4.1.1.7" or ds.SamplesPerPixel != 3:
            return None
        return np.asarray(ds.pixel_array, dtype=np.uint8)
    except (OSError, InvalidDicomError, AttributeError, ValueError) as exc:
        log.warning("overlay %s not readable for a preview: %s", path.name, exc)
        return None
