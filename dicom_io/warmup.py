"""Load highdicom's DICOM-standard tables once at start-up.

highdicom reads large JSON tables of the standard (IODs, modules, attributes) lazily; the
first object written pays several seconds for it. A service calls ``warm_up`` at start so
that the first routed study does not. The tables are loaded through highdicom's public API
only: one tiny Secondary Capture image (PS3.3 A.8.1) is built in memory from a synthetic
MR slice header, which makes highdicom copy the patient and study modules the way every
real result object does. Nothing is written and no patient data is involved.
"""

from __future__ import annotations

import logging
import time

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage, generate_uid

log = logging.getLogger(__name__)


def _synthetic_mr_header() -> Dataset:
    """The patient, study and SOP attributes SCImage.from_ref_dataset reads (all empty)."""
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
                    "ReferringPhysicianName"):  # fmt: skip
        setattr(ds, keyword, "")
    return ds


def warm_up() -> float:
    """Load the tables; returns the seconds it took."""
    start = time.perf_counter()
    hd.sc.SCImage.from_ref_dataset(
        ref_dataset=_synthetic_mr_header(),
        pixel_array=np.zeros((2, 2), dtype=np.uint8),
        photometric_interpretation="MONOCHROME2",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=generate_uid(),
        series_number=1,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="brainxai",
        patient_orientation=("L", "P"),
    )
    seconds = time.perf_counter() - start
    log.info("highdicom standard tables loaded in %.1f s", seconds)
    return seconds
