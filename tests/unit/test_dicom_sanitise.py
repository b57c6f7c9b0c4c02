"""Invalid source values never break the SC, PM and SR writers (dicom_io.sanitise).

Each object is built from a small in-memory series whose header carries values found in
real archives (PatientSex 0, PatientBirthDate 000000 or ***, PatientAge 00, an over-long LO,
a wrong VR, non-ASCII without a character set); the invalid attribute must be dropped or
emptied, and the warning must name the keyword without quoting the value.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dicom_io.context import ResultContext
from dicom_io.parametric_map import build_parametric_map
from dicom_io.reader import assemble
from dicom_io.sanitise import failure_reason, sanitise_source
from dicom_io.secondary_capture import build_overlays
from dicom_io.series import Series, Slice
from dicom_io.structured_report import build_report
from vocabulary.decisions import SeriesDecision, SliceDecision
from vocabulary.errors import InputError

MR = "1.2.840.10008.5.1.4.1.1.4"
CTX = ResultContext(model_version="9.9.9-test")
LONG_LO = "LONGSTUDYDESCRIPTION" * 4  # 80 characters, LO allows 64


def raw(tag: int, vr: str, value: bytes) -> RawDataElement:
    """A stored element as pydicom reads it: no check of the value against its VR."""
    return RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def header(i: int, **bad: bytes) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = MR
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.7.{i + 1}"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.5"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.6"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.8"
    ds.Modality, ds.Manufacturer, ds.SeriesDescription = "MR", "ACME", "T1 AX"
    ds.PatientName, ds.PatientID = "Doe^Jane", "P1"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20200101", "120000", "", "1"
    ds.SeriesNumber, ds.InstanceNumber = 4, i + 1
    ds.Rows, ds.Columns, ds.PixelSpacing, ds.SliceThickness = 16, 16, [1.0, 1.0], 3.0
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 3.0 * i]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    keywords = {"PatientSex": 0x00100040, "PatientBirthDate": 0x00100030}
    keywords |= {"PatientAge": 0x00101010, "StudyDescription": 0x00081030}
    vrs = {"PatientSex": "CS", "PatientBirthDate": "DA", "PatientAge": "AS"}
    for kw, value in bad.items():
        ds[keywords[kw]] = raw(keywords[kw], vrs.get(kw, "LO"), value)
    return ds


def bad_series(n: int = 6, **bad: bytes) -> Series:
    """n axial 16x16 slices whose headers carry ``bad`` raw values (keyword -> bytes)."""
    slices = [
        Slice(
            sop_instance_uid=f"1.2.826.0.1.3680043.8.498.7.{i + 1}",
            sop_class_uid=MR,
            pixels=np.full((16, 16), float(i), np.float32),
            dataset=header(i, **bad),
            image_position=(0.0, 0.0, 3.0 * i),
            image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            pixel_spacing=(1.0, 1.0),
            slice_thickness=3.0,
            instance_number=i + 1,
        )
        for i in range(n)
    ]
    return assemble(slices)[0]


def decision(series: Series) -> SeriesDecision:
    slices = tuple(SliceDecision(i, True, "eligible", "glioma", 0.9) for i in range(len(series)))
    probs = {"glioma": 0.9, "meningioma": 0.05, "notumor": 0.05, "pituitary": math.nan}
    return SeriesDecision("glioma", "test", probs, slices, {})


def build_all(series: Series, warnings: list[str]) -> list[Dataset]:
    rgb = [np.full((16, 16, 3), 40, np.uint8)]
    sc = build_overlays(series, [2], rgb, CTX, source_warnings=warnings)
    maps = np.zeros((len(series), 16, 16), np.float32)
    pm = build_parametric_map(series, maps, CTX, source_warnings=warnings)
    sr = build_report(
        [series], [decision(series)], "glioma", "r", {"glioma": 0.9}, {}, CTX,
        source_warnings=warnings,
    )  # fmt: skip
    return [*sc, pm, sr]


def reread(ds: Dataset) -> Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("birth_date", [b"000000", b"***\x20"])
def test_objects_build_from_invalid_patient_values(birth_date: bytes) -> None:
    series = bad_series(
        PatientSex=b"0\x20", PatientBirthDate=birth_date, PatientAge=b"00",
        StudyDescription=LONG_LO.encode(),
    )  # fmt: skip
    warnings: list[str] = []
    objects = [reread(ds) for ds in build_all(series, warnings)]
    assert len(objects) == 3
    for ds in objects:
        assert "PatientSex" in ds and ds.PatientSex == ""  # Type 2: emptied
        assert "PatientBirthDate" in ds and ds.PatientBirthDate == ""
        assert "PatientAge" not in ds  # Type 3: dropped
        assert ds.get("StudyDescription", "") != LONG_LO
        assert ds.PatientName == "Doe^Jane" and ds.PatientID == "P1"  # valid values kept
    assert {w.split(":")[0] for w in warnings} == {
        "PatientSex",
        "PatientBirthDate",
        "PatientAge",
        "StudyDescription",
    }
    assert len(warnings) == 4, warnings  # once each, though three objects met them
    for w in warnings:
        for value in ("000000", "***", "'0'", "'00'", LONG_LO[:20]):
            assert value not in w, w
    assert any("M, F, O" in w for w in warnings)


def test_source_headers_are_not_changed() -> None:
    series = bad_series(PatientSex=b"0\x20", PatientBirthDate=b"000000")
    build_all(series, [])
    for sl in series.slices:
        assert sl.dataset.PatientSex == "0"
        assert sl.dataset.PatientBirthDate == "000000"


def sanitised(**elements: Any) -> tuple[Dataset, tuple[str, ...], Any]:
    ds = header(0)
    for kw, elem in elements.items():
        ds[elem.tag if isinstance(elem, DataElement) else Tag(kw)] = elem
    out = sanitise_source(ds)
    return out.dataset, out.warnings, out.specific_character_set


def test_wrong_vr_is_rewritten_when_the_value_fits() -> None:
    ds, warnings, _ = sanitised(
        PatientSex=raw(0x00100040, "LO", b"F\x20"), PatientAge=raw(0x00101010, "LO", b"045Y")
    )
    assert ds["PatientSex"].VR == "CS" and ds.PatientSex == "F"
    assert ds["PatientAge"].VR == "AS" and ds.PatientAge == "045Y"
    assert "PatientSex: VR LO where PS3.6 gives CS; written as VR CS" in warnings


def test_wrong_vr_that_does_not_fit_is_dropped() -> None:
    ds, warnings, _ = sanitised(PatientSex=raw(0x00100040, "LO", b"female"))
    assert ds.PatientSex == ""
    assert warnings == ("PatientSex: VR LO where PS3.6 gives CS; sent empty (Type 2)",)


def test_control_characters_several_values_and_bad_dates() -> None:
    ds, warnings, _ = sanitised(
        InstitutionName=raw(0x00080080, "LO", b"Clinic\x07"),
        PatientSex=raw(0x00100040, "CS", b"M\\F"),
        StudyDate=raw(0x00080020, "DA", b"20230231"),
        StudyTime=raw(0x00080030, "TM", b"0900-1000"),
    )
    assert "InstitutionName" not in ds
    assert ds.PatientSex == "" and ds.StudyDate == "" and ds.StudyTime == ""
    assert len(warnings) == 4
    assert any(w.startswith("InstitutionName: control characters") for w in warnings)


def test_long_decimal_and_bare_age_are_reformatted() -> None:
    ds, warnings, _ = sanitised(
        PatientWeight=raw(0x00101030, "DS", b"70.1234567890123456"),
        PatientAge=raw(0x00101010, "AS", b"42"),
    )
    assert len(str(ds.PatientWeight)) <= 16 and abs(float(ds.PatientWeight) - 70.1234567) < 1e-6
    assert ds.PatientAge == "042Y"
    assert all(w.endswith("; reformatted") for w in warnings)


def test_invalid_item_drops_the_whole_sequence() -> None:
    item = Dataset()
    item[0x00100020] = raw(0x00100020, "LO", b"X" * 70)
    item.TypeOfPatientID = "TEXT"
    ds, warnings, _ = sanitised(OtherPatientIDsSequence=DataElement(0x00101002, "SQ", [item]))
    assert "OtherPatientIDsSequence" not in ds
    assert warnings == (
        "OtherPatientIDsSequence: item attribute PatientID: longer than the 64 characters "
        "of VR LO; dropped",
    )


def test_damaged_values_found_by_fuzzing_are_dropped() -> None:
    ds, warnings, _ = sanitised(
        PatientAge=raw(0x00101010, "AS", "\u00b9".encode("latin-1")),  # a superscript digit
        OtherPatientIDsSequence=raw(0x00101002, "SQ", b"3"),  # not a sequence
        PatientName=DataElement(0x00100010, "SQ", []),  # a sequence where PS3.6 says PN
    )
    assert "PatientAge" not in ds and "OtherPatientIDsSequence" not in ds
    assert ds["PatientName"].VR == "PN" and ds.PatientName == ""
    assert sorted(warnings) == [
        "OtherPatientIDsSequence: value cannot be decoded; dropped",
        "PatientAge: not a valid VR AS value; dropped",
        "PatientName: VR SQ where PS3.6 gives PN; sent empty (Type 2)",
    ]


def test_parametric_map_needs_one_valid_frame_of_reference() -> None:
    series = bad_series()
    del series.slices[3].dataset.FrameOfReferenceUID
    with pytest.raises(InputError, match="FrameOfReferenceUID"):
        build_parametric_map(series, np.zeros((len(series), 16, 16), np.float32), CTX)


def test_parametric_map_copes_with_a_slice_thickness_that_is_not_a_number() -> None:
    series = bad_series()
    for sl in series.slices:
        sl.dataset[0x00180050] = raw(0x00180050, "DS", b"abc\x20")
    pm = reread(build_parametric_map(series, np.zeros((len(series), 16, 16), np.float32), CTX))
    measures = pm.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == 3.0
    assert series.slices[0].dataset.SliceThickness == "abc"  # the source is not changed


def test_non_ascii_needs_a_character_set_that_holds_it() -> None:
    ds = header(0)
    del ds.SpecificCharacterSet
    ds.PatientName = "M\u00fcller^J\u00fcrgen"
    out = sanitise_source(ds)
    assert out.specific_character_set == "ISO_IR 192"
    assert out.dataset.PatientName == "M\u00fcller^J\u00fcrgen"
    assert out.warnings == (
        "SpecificCharacterSet: absent while copied values are not ASCII; "
        "objects written as ISO_IR 192 (UTF-8)",
    )
    ds.SpecificCharacterSet = "ISO_IR 100"  # Latin-1 holds it: kept, no warning
    assert sanitise_source(ds).specific_character_set == "ISO_IR 100"
    assert sanitise_source(ds).warnings == ()


def test_undecodable_text_is_dropped_and_written_objects_hold_utf8() -> None:
    ds = header(0)
    ds.PatientName = "Doe^\ufffd"
    ds.StudyDescription = "Kopf \u00fc\u00e4 \u4e2d"  # not Latin-1
    out = sanitise_source(ds)
    assert out.dataset.PatientName == ""
    assert out.specific_character_set == "ISO_IR 192"
    assert "PatientName: characters the declared character set cannot decode; sent empty" in (
        " ".join(out.warnings)
    )


def test_valid_headers_give_no_warnings() -> None:
    out = sanitise_source(header(0))
    assert out.warnings == () and out.specific_character_set == "ISO_IR 100"


def test_failure_reason_never_quotes_values_or_paths() -> None:
    try:
        pydicom.valuerep.DA("000000")
    except ValueError as exc:
        reason = failure_reason(exc)
    assert reason.startswith("ValueError in pydicom.valuerep line ")
    assert "000000" not in reason
    err = InputError("cannot read '/data/Doe_Jane/IM1' (value 'Doe^Jane')\nsecond line")
    assert failure_reason(err) == "cannot read <value> (value <value>)"
    assert failure_reason(InputError("folder /data/Doe_Jane/x is empty")) == (
        "folder <path> is empty"
    )
