"""A real, simple processor for the service tests: one Secondary Capture per MR input.

Each SC (PS3.3 A.8.1) is an 8-bit copy of its source slice in the same study, in one new
series, with UIDs derived deterministically from the source UIDs, so re-processing yields the
same instances. Environment knobs: BRAINXAI_TEST_MARKER (a file touched when processing
starts) and BRAINXAI_TEST_DELAY (seconds of extra work, to kill or stop things mid-job);
BRAINXAI_TEST_POISON: a StudyInstanceUID whose analysis kills the process (SIGKILL), as a
study that crashes every worker would.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from plugin.service.worker import ProcessResult

SC_SERIES_NUMBER = 9901
MANUFACTURER = "brainxai"


def _sc_from(src: Dataset, series_uid: str) -> Dataset:
    pixels = src.pixel_array.astype(np.float32)
    lo, hi = float(pixels.min()), float(pixels.max())
    img = ((pixels - lo) / max(hi - lo, 1.0) * 255.0).astype(np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[src.SOPInstanceUID, "sc"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                    "AccessionNumber", "ReferringPhysicianName"):  # fmt: skip
        setattr(ds, keyword, src.get(keyword, ""))
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "OT"
    ds.SeriesNumber = SC_SERIES_NUMBER
    ds.SeriesDescription = "brainxai test SC"
    ds.InstanceNumber = int(src.get("InstanceNumber", 1))
    ds.Manufacturer = MANUFACTURER
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = img.shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = img.tobytes()
    return ds


def process(paths: list[Path], out_dir: Path) -> ProcessResult:
    marker = os.environ.get("BRAINXAI_TEST_MARKER")
    if marker:
        Path(marker).touch()
    delay = float(os.environ.get("BRAINXAI_TEST_DELAY", "0"))
    if delay:
        time.sleep(delay)  # stands for a long analysis
    outputs: list[Path] = []
    series: dict[str, Any] = {}
    for path in paths:
        src = dcmread(path)
        if str(src.StudyInstanceUID) == os.environ.get("BRAINXAI_TEST_POISON"):
            os.kill(os.getpid(), signal.SIGKILL)
        series_uid = generate_uid(entropy_srcs=[src.SeriesInstanceUID, "brainxai-sc"])
        sc = _sc_from(src, series_uid)
        out = out_dir / f"sc-{sc.SOPInstanceUID}.dcm"
        sc.save_as(out, enforce_file_format=True)
        outputs.append(out)
        entry = series.setdefault(src.SeriesInstanceUID, {"selected": True, "outputs": 0})
        entry["outputs"] += 1
    return ProcessResult(outputs=outputs, summary={"series": series})


def make_processor(context: Any) -> Any:
    return process
