"""MR contrast from the header: descriptions first, then echo and inversion times."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from dicom_io.sequence import sequence_of
from dicom_io.series import Series


def _series(**attrs: object) -> Series:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return Series("1.2.3", "1.2.3.4", "MR", str(attrs.get("SeriesDescription", "")), ds, ())


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"SeriesDescription": "MRHR FLAIR AX"}, "flair"),
        ({"SeriesDescription": "MRHR T2 AX"}, "t2"),
        ({"SeriesDescription": "MRHR T1 AX POST GAD"}, "t1"),
        ({"SeriesDescription": "ax_mprage"}, "t1"),
        ({"SeriesDescription": "ep2d_diff_trace"}, "dwi"),
        ({"SeriesDescription": "brain", "EchoTime": 8.9}, "t1"),
        ({"SeriesDescription": "brain", "EchoTime": 95.0}, "t2"),
        ({"SeriesDescription": "brain", "EchoTime": 120.0, "InversionTime": 2500.0}, "flair"),
        ({"SeriesDescription": "brain"}, "unknown"),
        ({"SeriesDescription": "AX T1 FLAIR POST"}, "t1"),
        ({"SeriesDescription": "t1_flair_tra"}, "t1"),
        ({"SeriesDescription": "AX FLAIR", "EchoTime": 12.0, "InversionTime": 860.0}, "t1"),
        ({"SeriesDescription": "AX FLAIR", "EchoTime": 140.0, "InversionTime": 2400.0}, "flair"),
        ({"SeriesDescription": "T2 FLAIR AX"}, "flair"),
    ],
)
def test_sequence_of(attrs: dict[str, object], expected: str) -> None:
    assert sequence_of(_series(**attrs)) == expected
