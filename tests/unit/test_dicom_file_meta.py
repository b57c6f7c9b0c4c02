"""The directly encoded File Meta Information equals what pydicom writes (PS3.10 7.1)."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from dicom_io.file_meta import PREAMBLE, encode_file_meta


def _pydicom_meta(sop_class: str, sop_uid: str, syntax: str, aet: str) -> bytes:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYNETDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = PYNETDICOM_IMPLEMENTATION_VERSION
    if aet:
        meta.SourceApplicationEntityTitle = aet
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("sop_uid", "aet"),
    [("1.2.3.4.5", "ORTHANC"), ("1.2.3.4.56", "ORTHANCX"), ("1.2.840.99", "")],
)
def test_same_bytes_as_pydicom(sop_uid: str, aet: str) -> None:
    args = ("1.2.840.10008.5.1.4.1.1.4", sop_uid, "1.2.840.10008.1.2.1")
    ours = encode_file_meta(*args, source_ae_title=aet)
    assert ours.startswith(PREAMBLE)
    assert ours[len(PREAMBLE) :] == _pydicom_meta(*args, aet)


def test_pydicom_reads_it_back() -> None:
    raw = encode_file_meta("1.2.840.10008.5.1.4.1.1.4", "1.2.3.45", "1.2.840.10008.1.2", "A")
    ds = dcmread(BytesIO(raw))  # public reader: preamble, File Meta, then the data set
    meta = ds.file_meta
    assert meta.MediaStorageSOPInstanceUID == "1.2.3.45"
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert meta.FileMetaInformationGroupLength == len(raw) - len(PREAMBLE) - 12
    assert len(ds) == 0  # the group length ends the meta exactly where the bytes end
