"""`brainxai analyze` on the shared real series with the bundled model.

Checks the study-level rule (glioblastoma -> glioma or indeterminate, never another tumour;
normal brains -> never a tumour class), and that every object written is valid DICOM on the
source geometry (pydicom + highdicom read-back, dciodvfy without errors).
"""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from plugin.commands.cli import main
from tests.conftest import shared
from tests.integration.test_dicom_writers import dciodvfy_errors
from vocabulary.sentence import class_name, study_sentence

pytestmark = pytest.mark.slow  # four real series through the whole analysis: minutes

TUMOUR = {"glioma", "meningioma", "pituitary"}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from tests.conftest import BUNDLED_MODEL

    if not BUNDLED_MODEL.is_file():
        pytest.skip("bundled model missing")
    out = tmp_path_factory.mktemp("analyze")
    folders = [
        shared("dicom", n) for n in ("pgbm-001-t1post", "tcga-fg-6692", "normal-t1-sagittal")
    ]
    args = ["analyze", *map(str, folders), "--out", str(out), "--model", str(BUNDLED_MODEL)]
    assert main([*args, "--quality-slices", "1"]) == 0
    return out, json.loads((out / "summary.json").read_text())


def _study(summary: dict, description: str) -> dict:
    for st in summary["studies"]:
        if any(se["series_description"] == description for se in st["series"]):
            return st
    raise AssertionError(f"no study with series {description!r}")


def test_study_classes_follow_the_rule(analysed: tuple[Path, dict]) -> None:
    _, summary = analysed
    pgbm = _study(summary, "T1post")["prediction"]["class"]
    assert pgbm in ("glioma", "indeterminate"), pgbm
    tcga = _study(summary, "MRHR FLAIR AX")["prediction"]["class"]
    assert tcga in ("glioma", "indeterminate"), tcga
    normal = _study(summary, "t1_fl2d_sag")["prediction"]["class"]
    assert normal not in TUMOUR, normal
    for st in summary["studies"]:
        for se in st["series"]:
            assert se["reason"], se
            for sl in se.get("slices", []):
                assert sl["eligible"] or sl["reason"] != "eligible"
    flair = next(
        se for se in _study(summary, "MRHR FLAIR AX")["series"] if se["sequence"] == "flair"
    )
    assert flair["prediction"]["class"] == "indeterminate"
    assert flair["sentence"].startswith("Indeterminate: FLAIR series")


def test_summary_states_each_decision_in_one_sentence(analysed: tuple[Path, dict]) -> None:
    """summary.json's ``sentence`` per study and series agrees with the class it states."""
    _, summary = analysed
    for st in summary["studies"]:
        p = st["prediction"]
        assert st["sentence"] == study_sentence(p["class"], p["reason"])
        for se in st["series"]:
            if "prediction" not in se:
                assert "sentence" not in se
                continue
            label = se["prediction"]["class"]
            start = (
                "Indeterminate: " if label == "indeterminate" else f"Finding: {class_name(label)} ("
            )
            assert se["sentence"].startswith(start), se["sentence"]


def test_normal_axial_never_gets_a_tumour_class(tmp_path: Path) -> None:
    from tests.conftest import BUNDLED_MODEL

    if not BUNDLED_MODEL.is_file():
        pytest.skip("bundled model missing")
    folder = shared("dicom", "normal-t1w-axial")
    args = ["analyze", str(folder), "--out", str(tmp_path), "--model", str(BUNDLED_MODEL)]
    args += ["--methods", "gradcam"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["studies"][0]["prediction"]["class"] not in TUMOUR
    # by default no curves, only the brain mass of the most confident assessed slice
    quality = [se["explanation"] for se in summary["studies"][0]["series"] if se.get("explanation")]
    assert quality, summary
    for figures in quality:
        assert set(figures["gradcam"]) == {"brain_mass", "n_slices", "outside_brain"}
        assert 0.0 <= figures["gradcam"]["brain_mass"] <= 1.0
        assert figures["gradcam"]["n_slices"] == 1.0


def test_shown_methods_do_not_change_the_decision(
    analysed: tuple[Path, dict], tmp_path: Path
) -> None:
    """Saliency alone is shown: the Grad-CAM gate still runs on Grad-CAM (with_gate_map), so
    every slice's gate figures and the decision equal those of the default methods, and only
    the shown method is written and measured."""
    from tests.conftest import BUNDLED_MODEL

    folder = shared("dicom", "pgbm-001-t1post")
    args = ["analyze", str(folder), "--out", str(tmp_path), "--model", str(BUNDLED_MODEL)]
    assert main([*args, "--methods", "saliency"]) == 0
    (alone,) = json.loads((tmp_path / "summary.json").read_text())["studies"]
    default = _study(analysed[1], "T1post")
    assert alone["prediction"] == default["prediction"]
    (se,) = [s for s in alone["series"] if s.get("slices")]
    (de,) = [s for s in default["series"] if s.get("slices")]
    gates = [{k: v for k, v in sl.items() if k.startswith("cam_")} for sl in se["slices"]]
    assert gates == [{k: v for k, v in sl.items() if k.startswith("cam_")} for sl in de["slices"]]
    assert all("cam_inside_brain" in g for g in gates)
    assert set(se["explanation"]) == {"saliency"}


def test_quality_curves_are_measured_when_asked(analysed: tuple[Path, dict]) -> None:
    """--quality-slices 1: each assessed series carries its explanation's curve figures,
    and its SR states them and whether the explanation fails its own checks."""
    out, summary = analysed
    assessed = [se for st in summary["studies"] for se in st["series"] if se.get("explanation")]
    assert assessed
    for se in assessed:
        for figures in se["explanation"].values():
            for name in ("deletion_auc", "deletion_auc_random", "road_deletion_auc",
                         "insertion_auc", "insertion_auc_random"):  # fmt: skip
                assert 0.0 <= figures[name] <= 1.0, (name, figures)
            assert figures["n_slices"] == 1.0
    srs = [
        pydicom.dcmread(p)
        for p in out.rglob("*.dcm")
        if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SR"
    ]
    text = "\n".join(str(ds) for ds in srs)
    assert "Deletion curve area (lower is better)" in text
    assert "fails its own quality checks" in text


def test_written_objects_are_valid_and_on_the_source_geometry(
    analysed: tuple[Path, dict],
) -> None:
    _, summary = analysed
    study = _study(summary, "T1post")
    series = next(se for se in study["series"] if se["series_description"] == "T1post")
    paths = [Path(p) for p in study["outputs"]]
    kinds = {p.parent.name for p in paths}
    assert {"sc", "pm", "sr"} <= kinds, kinds
    source = {
        ds.SOPInstanceUID: ds
        for ds in (pydicom.dcmread(p) for p in shared("dicom", "pgbm-001-t1post").iterdir())
    }
    for kind in ("sc", "pm", "sr"):
        path = next(p for p in paths if p.parent.name == kind)
        assert dciodvfy_errors(path) == [], path
    for path in paths:
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == study["study_instance_uid"]
        assert ds.Manufacturer == "brainxai"
        assert ds.SeriesDescription.startswith("AI ")
        if path.parent.name == "pm":
            pm = hd.pm.ParametricMap.from_dataset(ds)
            assert pm.ContentQualification == "RESEARCH"
            assert (ds.Rows, ds.Columns) == (320, 260)
            assert int(ds.NumberOfFrames) == series["n_slices"]
            first = source[next(iter(source))]
            assert np.allclose(
                [
                    float(v)
                    for v in ds.SharedFunctionalGroupsSequence[0]
                    .PixelMeasuresSequence[0]
                    .PixelSpacing
                ],
                [float(v) for v in first.PixelSpacing],
            )
            for frame in ds.PerFrameFunctionalGroupsSequence:
                ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
                src = source[ref.ReferencedSOPInstanceUID]
                pos = frame.PlanePositionSequence[0].ImagePositionPatient
                assert np.allclose(
                    [float(v) for v in pos], [float(v) for v in src.ImagePositionPatient], atol=1e-3
                )
        if path.parent.name == "sc":
            assert ds.BurnedInAnnotation == "YES"
            ref = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
            assert ref in source
        if path.parent.name == "sr":
            assert b"NOT FOR DIAGNOSIS" in path.read_bytes().upper()
            _check_report(path, paths, study)


def _check_report(path: Path, outputs: list[Path], study: dict) -> None:
    """The SR is a TID 1500 report whose finding is the study class and which references
    every SC and PM written for the study."""
    sr = hd.sr.srread(path)
    report = hd.sr.MeasurementReport.from_sequence(sr.content)
    assert report.get_observer_contexts()[0].observer_identifying_attributes.name
    groups = report.get_image_measurement_groups()
    assert str(groups[0].tracking_identifier) == "Study result"
    meaning = groups[0].finding_type.meaning.lower()
    expected = {"notumor": "no tumour found", "pituitary": "pituitary tumour"}
    label = study["prediction"]["class"]
    assert meaning == expected.get(label, label)
    referenced = {
        i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for g in groups
        for i in g[0].ContentSequence
        if i.ValueType == "IMAGE"
    }
    ours = {p.stem for p in outputs if p.parent.name in ("sc", "pm")}
    assert ours and ours <= referenced
