"""The receiver reads StudyInstanceUID from the encoded data set in every encoding."""

from __future__ import annotations

import zlib

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom_io.store_scp import study_uid_of


def _encoded(little: bool, implicit: bool) -> bytes:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4"
    ds.StudyInstanceUID = "1.2.840.99.7"
    ds.SeriesInstanceUID = "1.2.840.99.8"
    ds.PixelData = b"\x00" * 64
    ds["PixelData"].VR = "OW"
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = little, implicit
    write_dataset(buf, ds)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("syntax", "little", "implicit"),
    [
        (ImplicitVRLittleEndian, True, True),
        (ExplicitVRLittleEndian, True, False),
        (ExplicitVRBigEndian, False, False),
    ],
)
def test_plain_encodings(syntax: str, little: bool, implicit: bool) -> None:
    assert study_uid_of(_encoded(little, implicit), syntax) == "1.2.840.99.7"


def test_deflated_data_set_is_inflated_first() -> None:
    raw = _encoded(True, False)
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    deflated = packer.compress(raw) + packer.flush()
    assert study_uid_of(deflated, DeflatedExplicitVRLittleEndian) == "1.2.840.99.7"


def test_missing_study_uid_raises() -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4"
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    with pytest.raises(AttributeError):
        study_uid_of(buf.getvalue(), ImplicitVRLittleEndian)
