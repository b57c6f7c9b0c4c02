"""The study report is a TID 1500 Measurement Report that highdicom and dciodvfy accept.

One in-memory study of two small axial series (one decided glioma by the slice vote, one
indeterminate) plus one series not analysed; the SC overlays and Parametric Maps of the
first series are built by the real writers and their UIDs passed to the report, as
plugin.pipeline does. The report is written to disk, checked with dciodvfy (no line may
start with "Error") and read back with highdicom's TID 1500 classes.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as std

from dicom_io import codes
from dicom_io.context import ResultContext
from dicom_io.files import write_datasets
from dicom_io.parametric_map import MapOptions, build_parametric_map
from dicom_io.reader import assemble
from dicom_io.secondary_capture import build_overlays
from dicom_io.series import Series, Slice
from dicom_io.structured_report import ResultObject, SkippedSeries, build_report
from inference.aggregation import SeriesDecision, SliceDecision
from vocabulary.sentence import series_sentence, study_sentence

MR = "1.2.840.10008.5.1.4.1.1.4"
ROOT = "1.2.826.0.1.3680043.8.498.77"
STUDY = f"{ROOT}.1"
CTX = ResultContext(model_version="9.9.9-unit")
PROBS = {"glioma": 0.47, "meningioma": 0.05, "notumor": 0.07, "pituitary": 0.41}


def header(series: int, i: int) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = MR, f"{ROOT}.{series}.{i + 1}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, f"{ROOT}.{series}"
    ds.FrameOfReferenceUID = f"{ROOT}.9"
    ds.Modality, ds.Manufacturer, ds.SeriesDescription = "MR", "ACME", f"T1 AX {series}"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "P1", "", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20200101", "120000", "", "1"
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber, ds.InstanceNumber = series, i + 1
    ds.Rows, ds.Columns, ds.PixelSpacing, ds.SliceThickness = 16, 16, [1.0, 1.0], 3.0
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 3.0 * i]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def make_series(number: int, n: int = 8) -> Series:
    slices = [
        Slice(
            sop_instance_uid=f"{ROOT}.{number}.{i + 1}",
            sop_class_uid=MR,
            pixels=np.full((16, 16), float(i), np.float32),
            dataset=header(number, i),
            image_position=(0.0, 0.0, 3.0 * i),
            image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            pixel_spacing=(1.0, 1.0),
            slice_thickness=3.0,
            instance_number=i + 1,
        )
        for i in range(n)
    ]
    return assemble(slices)[0]


def decision(series: Series, label: str, votes: dict[str, int]) -> SeriesDecision:
    eligible = range(2, 7)
    slices = tuple(
        SliceDecision(i, i in eligible, "eligible" if i in eligible else "skull base", label, 0.9)
        for i in range(len(series))
    )
    reason = "5 eligible slices, 3 confidently glioma" if label == "glioma" else "no consistent"
    return SeriesDecision(label, reason, dict(PROBS), slices, votes)


BLOB = np.zeros((16, 16), np.float32)
BLOB[3:7, 10:13] = 0.9  # Grad-CAM's top region on the deciding slice: rows 3-6, columns 10-12
BLOB[4, 11] = 1.0
BLOB[12:14, 1:3] = 0.1  # weaker relevance elsewhere, below the top 10 %


@dataclass
class Built:
    path: Path
    first: Series
    second: Series
    objects: list[ResultObject]
    others: list[Dataset]  # the SC and PM datasets


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    first, second = make_series(4), make_series(5)
    rgb = [np.full((16, 16, 3), 40, np.uint8)] * 2
    sc = build_overlays(first, [3, 4], rgb, CTX)
    maps = np.zeros((len(first), 16, 16), np.float32)
    pm = build_parametric_map(first, maps, CTX)
    pm_sal = build_parametric_map(first, maps, CTX, MapOptions("saliency", "Saliency"))
    objects = [ResultObject.of(ds, "gradcam") for ds in [*sc, pm]]
    objects.append(ResultObject.of(pm_sal, "saliency"))
    metrics = {
        first.series_instance_uid: {
            "gradcam": {"brain_mass": 0.42, "deletion_auc": 0.21, "n_slices": 2.0,
                        "outside_brain": 1.0, "deletion_auc_random": 0.18},
            "saliency": {"brain_mass": 0.81, "insertion_auc": 0.55,
                         "insertion_auc_random": 0.5},
        }
    }  # fmt: skip
    sr = build_report(
        [first, second],
        [decision(first, "glioma", {"glioma": 3}), decision(second, "indeterminate", {})],
        "glioma",
        "1 of 2 series called glioma",
        PROBS,
        metrics,
        CTX,
        skipped=[SkippedSeries(f"{ROOT}.6", "localizer (ImageType LOCALIZER)")],
        results={first.series_instance_uid: objects},
        attention={first.series_instance_uid: {"gradcam": BLOB}},  # saliency: none given
    )
    out = tmp_path_factory.mktemp("sr")
    (path,) = write_datasets([sr], out)
    return Built(path, first, second, objects, [*sc, pm, pm_sal])


@pytest.fixture(scope="module")
def read(built: Built) -> tuple[hd.sr.ComprehensiveSR, hd.sr.MeasurementReport]:
    """The written report read back by highdicom as a TID 1500 Measurement Report."""
    sr = hd.sr.srread(built.path)
    return sr, hd.sr.MeasurementReport.from_sequence(sr.content)


Read = tuple[hd.sr.ComprehensiveSR, hd.sr.MeasurementReport]


def groups_by_name(report: hd.sr.MeasurementReport) -> dict[str, Dataset]:
    return {str(g.tracking_identifier): g for g in report.get_image_measurement_groups()}


def items(group: Dataset, value_type: str) -> list[Dataset]:
    return [i for i in group[0].ContentSequence if i.ValueType == value_type]


def texts(group: Dataset, code: object) -> list[str]:
    return [
        i.TextValue
        for i in items(group, "TEXT")
        if i.ConceptNameCodeSequence[0].CodeValue == code.value  # type: ignore[attr-defined]
    ]


def test_dciodvfy_reports_no_errors(built: Built) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    out = subprocess.run(["dciodvfy", str(built.path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    assert [line for line in lines if line.startswith("Error")] == []
    assert any("99BRAINXAI" in line for line in lines)  # the tool did read our codes


def test_read_back_as_tid_1500_in_the_source_study(built: Built, read: Read) -> None:
    sr, report = read
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"  # Imaging Measurement Report
    assert sr.StudyInstanceUID == STUDY and sr.PatientID == "P1"
    others = {int(ds.SeriesNumber) for ds in built.others}
    assert int(sr.SeriesNumber) not in others
    assert sr.SeriesDate and sr.SeriesTime and sr.ContentDate and sr.ContentTime
    assert "NOT FOR DIAGNOSIS" in sr.DerivationDescription.upper()
    assert any(CTX.model_version in v for v in sr.SoftwareVersions)
    procedure = [
        i.ConceptCodeSequence[0].CodeValue
        for i in sr.ContentSequence
        if i.ConceptNameCodeSequence[0].CodeValue == "121058"  # Procedure reported
    ]
    assert procedure == [codes.PROCEDURE.value]


def test_the_algorithm_is_the_device_observer(read: Read) -> None:
    _, report = read
    (observer,) = report.get_observer_contexts(observer_type=std.DCM.Device)
    device = observer.observer_identifying_attributes
    assert device.name == CTX.algorithm_name
    assert device.manufacturer_name == CTX.manufacturer
    assert device.model_name == f"{CTX.model_name} {CTX.model_version}"
    assert device.uid.startswith("2.25.")
    for group in report.get_image_measurement_groups():
        names = {i.ConceptNameCodeSequence[0].CodeValue: i.TextValue for i in items(group, "TEXT")}
        assert names["111001"] == CTX.algorithm_name  # Algorithm Name (TID 4019)
        assert names["111003"] == CTX.model_version  # Algorithm Version
        assert names["122405"] == CTX.manufacturer  # Algorithm Manufacturer


def test_study_group_states_the_decision_and_its_reason(read: Read) -> None:
    _, report = read
    groups = groups_by_name(report)
    study = groups["Study result"]
    assert study.tracking_uid.startswith("2.25.")
    assert study.finding_type.value == codes.CLASS_CODES["glioma"].value
    assert study.finding_sites[0].value.value == std.SCT.Brain.value
    sentence, statement = texts(study, codes.COMMENT)  # DECISION is a Comment, listed first
    assert sentence == "Finding: Glioma (series vote: 1 of 2 series called glioma)."
    assert "NOT FOR DIAGNOSIS" in statement and CTX.model_version in statement
    (skipped,) = texts(study, codes.NOT_ANALYSED)
    assert skipped == f"{ROOT}.6: localizer (ImageType LOCALIZER)"
    probs = {m.name.meaning: m.value for m in study.get_measurements()}
    assert probs["Mean series probability of glioma (not the decision)"] == pytest.approx(0.47)
    assert probs["Mean series probability of no tumour (not the decision)"] == pytest.approx(0.07)
    assert all(m.unit.value == "1" for m in study.get_measurements())


def test_series_groups_give_the_vote_probabilities_and_source_slices(
    built: Built, read: Read
) -> None:
    _, report = read
    groups = groups_by_name(report)
    glioma, other = groups["Series 4 T1 AX 4"], groups["Series 5 T1 AX 5"]
    assert glioma.finding_type.value == "BXAI-GLIOMA"
    assert other.finding_type.value == std.SCT.Indeterminate.value
    (sentence,) = texts(glioma, codes.DECISION)
    assert sentence.startswith("Finding: Glioma (3 of 5 assessed slices; slice vote: ")
    assert texts(other, codes.DECISION) == ["Indeterminate: no consistent."]
    values = {m.name.value: m.value for m in glioma.get_measurements()}
    assert values["BXAI-P-GLIOMA"] == pytest.approx(0.47)
    assert values["BXAI-P-PITUITARY"] == pytest.approx(0.41)
    assert (values["BXAI-NSLICES"], values["BXAI-NASSESSED"], values["BXAI-NVOTES"]) == (8, 5, 3)
    assert "BXAI-NVOTES" not in {m.name.value for m in other.get_measurements()}
    sources = [i.referenced_sop_instance_uid for i in glioma.source_images]
    assert sources == [built.first.slices[i].sop_instance_uid for i in range(2, 7)]


def test_explanation_groups_reference_our_maps_and_overlays(built: Built, read: Read) -> None:
    sr, report = read
    groups = groups_by_name(report)
    gradcam = groups["Grad-CAM explanation of Series 4 T1 AX 4"]
    saliency = groups["Saliency explanation of Series 4 T1 AX 4"]
    assert gradcam.finding_type.value == std.DCM.VisualExplanation.value
    assert saliency.method.value == std.DCM.Saliency.value
    by_method = {"gradcam": gradcam, "saliency": saliency}
    for o in built.objects:
        group = by_method[o.method]
        images = items(group, "IMAGE")
        refs = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID: i for i in images}
        assert o.sop_instance_uid in refs
        ref = refs[o.sop_instance_uid]
        assert ref.ReferencedSOPSequence[0].ReferencedSOPClassUID == o.sop_class_uid
        expected = "121112" if o.is_map else codes.OVERLAY.value  # Source of Measurement
        assert ref.ConceptNameCodeSequence[0].CodeValue == expected
    evidence = {uid for _, _, uid, _ in sr.get_evidence()}
    assert {o.sop_instance_uid for o in built.objects} <= evidence
    quality = {m.name.meaning: m.value for m in gradcam.get_measurements()}
    assert quality["Heatmap mass inside the brain (share)"] == pytest.approx(0.42)
    assert quality["Slices used for the explanation quality"] == 2
    flags = {
        g.tracking_identifier: [q.value.value for q in g.get_qualitative_evaluations()]
        for g in (gradcam, saliency)
    }
    # [mostly outside the brain, fails its own checks]
    assert flags == {
        gradcam.tracking_identifier: [std.SCT.Yes.value, std.SCT.Yes.value],  # 0.42 inside
        saliency.tracking_identifier: [std.SCT.No.value, std.SCT.No.value],  # 0.55 > 0.5
    }
    names = [q.name.value for q in gradcam.get_qualitative_evaluations()]
    assert names == [codes.OUTSIDE_BRAIN.value, codes.FAILS_CHECKS.value]


def test_codes_are_standard_or_declared_and_readable(built: Built) -> None:
    ds = pydicom.dcmread(built.path)
    declared = {i.CodingSchemeDesignator for i in ds.CodingSchemeIdentificationSequence}
    assert declared == {codes.SCHEME}
    seen = set()
    for elem in ds.iterall():
        if elem.keyword in (
            "ConceptNameCodeSequence",
            "ConceptCodeSequence",
            "MeasurementUnitsCodeSequence",
        ):
            for code in elem.value:
                seen.add((code.CodingSchemeDesignator, code.CodeValue, code.CodeMeaning))
    schemes = {s for s, _, _ in seen}
    assert schemes <= {"DCM", "SCT", "LN", "UCUM", "RFC5646", codes.SCHEME}, schemes
    assert not [m for _, _, m in seen if "_" in m]  # no internal keys such as n_slices
    assert ("99BRAINXAI", "BXAI-Q-N_SLICES", "n_slices") not in seen


def test_decision_sentences() -> None:
    series = make_series(7)
    d = decision(series, "glioma", {"glioma": 3, "pituitary": 1})
    assert series_sentence(d) == (
        "Finding: Glioma (3 of 5 assessed slices; slice vote: "
        "5 eligible slices, 3 confidently glioma)."
    )
    assert study_sentence("notumor", "all 2 assessed series called notumor") == (
        "Finding: No tumour found (series vote: all 2 assessed series called notumor)."
    )
    assert study_sentence("indeterminate", "series disagree.") == "Indeterminate: series disagree."


def test_every_group_is_located_on_its_deciding_slice(built: Built, read: Read) -> None:
    """OHIF shows a TID 1500 group only on the image a SCOORD in it references, its label
    beside that region: the first measurement of each group is INFERRED FROM a region on the
    series' deciding slice (equal probabilities here: the first assessed slice, index 2), one
    region per group so the labels stand apart. The uniform test pixels give the whole
    16 x 16 image as the head: the study outlines it, a series points at its midline a quarter
    down, Grad-CAM
    outlines its map's top region, Saliency (no map given) falls back to the head outline."""
    _, report = read
    groups = groups_by_name(report)
    head = [[0, 0], [16, 0], [16, 16], [0, 16], [0, 0]]
    expected = {
        "Study result": (built.first.slices[2], "POLYLINE"),
        "Series 4 T1 AX 4": (built.first.slices[2], "POINT"),
        "Series 5 T1 AX 5": (built.second.slices[2], "POINT"),
        "Grad-CAM explanation of Series 4 T1 AX 4": (built.first.slices[2], "POLYLINE"),
        "Saliency explanation of Series 4 T1 AX 4": (built.first.slices[2], "POLYLINE"),
    }
    places = {}
    for name, (sl, kind) in expected.items():
        first, *rest = groups[name].get_measurements()
        (region,) = first.referenced_coordinates
        assert region.relationship_type == hd.sr.RelationshipTypeValues.INFERRED_FROM
        assert region.graphic_type.value == kind, name
        places[name] = region.value.tolist()
        ref = region.ContentSequence[0].ReferencedSOPSequence[0]
        assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (
            MR,
            sl.sop_instance_uid,
        ), name
        assert all(not m.referenced_coordinates for m in rest)
    assert places["Study result"] == head == places["Saliency explanation of Series 4 T1 AX 4"]
    assert places["Series 4 T1 AX 4"] == [[8.0, 4.0]]
    cam = np.asarray(places["Grad-CAM explanation of Series 4 T1 AX 4"])
    assert cam[0].tolist() == cam[-1].tolist() and len(cam) >= 4  # closed
    # through the centres of the top region's edge pixels (columns 10-12, rows 3-6)
    assert cam[:, 0].min() == 10.5 and cam[:, 0].max() == 12.5
    assert cam[:, 1].min() == 3.5 and cam[:, 1].max() == 6.5


def test_a_series_with_no_assessed_slice_still_gets_its_report() -> None:
    """Its region is drawn on the middle slice, which must then be evidence too (a real
    sagittal series with 0 assessed slices once lost its SR: 'No evidence was provided')."""
    only = make_series(7)
    none_assessed = tuple(
        SliceDecision(i, False, "skull base", "indeterminate", 0.5) for i in range(len(only))
    )
    sr = build_report(
        [only],
        [SeriesDecision("indeterminate", "only 0 eligible slices", dict(PROBS), none_assessed, {})],
        "indeterminate",
        "no series gave a decision",
        PROBS,
        {},
        CTX,
    )
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert only.slices[len(only) // 2].sop_instance_uid in evidence


def test_a_long_method_label_never_cuts_the_disclaimer() -> None:
    """ContentDescription is LO (64 characters): the label and version give way."""
    ctx = ResultContext(model_version="202612030130")
    series = make_series(6)
    for label, full in [("Grad-CAM sharpened", True), ("A much longer method label", False)]:
        opts = MapOptions("gradcam-gxi", label)
        pm = build_parametric_map(series, np.zeros((8, 16, 16), np.float32), ctx, opts)
        text = str(pm.ContentDescription)
        assert len(text) <= 64 and text.endswith("RESEARCH USE - NOT FOR DIAGNOSIS"), text
        assert text.startswith(label[:12]) and ("202612030130" in text) == full, text
