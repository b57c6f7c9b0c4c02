"""`brainxai analyze` on real archives: bad source values and broken studies stay local.

m025 (meningioma, shared volumes) carries PatientBirthDate 000000, PatientSex 0 and
PatientAge 00 (and an ImagePositionPatient repeated on every slice, which the reader repairs
from SliceLocation): its SC, PM and SR must still be written, valid, with those attributes
emptied or dropped, and the summary must name them without their values. A broken input
folder, or one object kind failing to build, must not cost the other study or the other
objects; the command then exits non-zero and summary.json says why in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest

from plugin.commands.cli import main
from tests.conftest import BUNDLED_MODEL, shared
from tests.integration.test_dicom_writers import dciodvfy_errors

pytestmark = pytest.mark.slow  # real archives through the whole analysis: minutes

M025_DESCRIPTION = "Neuronavigatore T1 MPRAGE TRA"
CLASSES = {"glioma", "meningioma", "notumor", "pituitary", "indeterminate"}


def _analyze(out: Path, *paths: Path) -> tuple[int, dict[str, Any]]:
    if not BUNDLED_MODEL.is_file():
        pytest.skip("bundled model missing")
    args = ["analyze", *map(str, paths), "--out", str(out), "--model", str(BUNDLED_MODEL)]
    code = main([*args, "--methods", "gradcam"])
    return code, json.loads((out / "summary.json").read_text())


def _study(summary: dict[str, Any], description: str) -> dict[str, Any]:
    for st in summary["studies"]:
        if any(se["series_description"] == description for se in st["series"]):
            return st
    raise AssertionError(f"no study with series {description!r}")


def _kinds(study: dict[str, Any]) -> set[str]:
    return {Path(p).parent.name for p in study["outputs"]}


@pytest.fixture(scope="module")
def real_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    m025 = shared("volumes", "meningioma", "m025", "t1-dicom")
    pgbm = shared("dicom", "pgbm-001-t1post")
    return _analyze(tmp_path_factory.mktemp("real-archive"), m025, pgbm)


def test_invalid_patient_values_do_not_break_the_study(
    real_archive: tuple[int, dict[str, Any]],
) -> None:
    code, summary = real_archive
    assert code == 0
    assert summary["failed_inputs"] == []
    m025, pgbm = _study(summary, M025_DESCRIPTION), _study(summary, "T1post")
    for st in (m025, pgbm):
        assert "error" not in st and st["errors"] == [], st["errors"]
        assert st["prediction"]["class"] in CLASSES
        assert {"pm", "sr"} <= _kinds(st), st["outputs"]
    assert pgbm["warnings"] == []
    assert sorted(w.split(":")[0] for w in m025["warnings"]) == [
        "PatientAge",
        "PatientBirthDate",
        "PatientSex",
    ]
    text = json.dumps(m025["warnings"])
    assert "000000" not in text and "'0'" not in text and "'00'" not in text


def test_noise_only_end_slices_are_named_and_do_not_shrink_the_brain(
    real_archive: tuple[int, dict[str, Any]],
) -> None:
    # m025's three top slices (above the vertex) hold only noise; their head masks fill the
    # image. Taken as the series' largest head, they made the whole upper brain "too little
    # head" (55 of 160 slices) and the study abstained on coverage for the wrong reason.
    _, summary = real_archive
    (series,) = _study(summary, M025_DESCRIPTION)["series"]
    reasons = [s["reason"] for s in series["slices"]]
    assert reasons[-3:] == ["no signal (noise only)"] * 3
    assert "no signal (noise only)" not in reasons[:-3]
    little = [i for i, r in enumerate(reasons) if r == "too little head in slice"]
    assert little and min(little) > 125, little  # only the shrinking head near the vertex
    # The reader's repair of the repeated ImagePositionPatient is said in the summary.
    assert series["notes"] == [
        "ImagePositionPatient repeats across slices: positions from SliceLocation"
    ]


def test_objects_from_invalid_values_are_valid_dicom(
    real_archive: tuple[int, dict[str, Any]],
) -> None:
    _, summary = real_archive
    m025 = _study(summary, M025_DESCRIPTION)
    first_of_kind: dict[str, Path] = {}
    for p in map(Path, m025["outputs"]):
        first_of_kind.setdefault(p.parent.name, p)
    for kind, path in first_of_kind.items():
        assert dciodvfy_errors(path) == [], kind
        ds = pydicom.dcmread(path)
        assert ds.PatientSex == "" and ds.PatientBirthDate == ""
        assert "PatientAge" not in ds
        assert ds.PatientID == "M025"
        if kind == "pm":
            assert hd.pm.ParametricMap.from_dataset(ds).ContentQualification == "RESEARCH"
        if kind == "sr":
            assert len(hd.sr.srread(path).ContentSequence) > 0


def test_a_broken_study_folder_never_stops_the_other(tmp_path: Path) -> None:
    pgbm = shared("dicom", "pgbm-001-t1post")
    broken = tmp_path / "broken-study"
    broken.mkdir()
    good = sorted(shared("volumes", "meningioma", "m025", "t1-dicom").iterdir())[0]
    (broken / "truncated.dcm").write_bytes(good.read_bytes()[:3000])
    (broken / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 500)
    code, summary = _analyze(tmp_path / "out", broken, pgbm)
    assert code == 1
    study = _study(summary, "T1post")
    assert study["errors"] == [] and {"pm", "sr"} <= _kinds(study)
    assert [s["study_instance_uid"] for s in summary["studies"]] == [study["study_instance_uid"]]
    (failed,) = summary["failed_inputs"]
    assert failed["input"] == str(broken)
    assert failed["error"] == "no readable DICOM image (2 file(s) refused)"


def test_an_object_that_fails_to_build_does_not_cost_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugin import pipeline

    def broken_report(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("Unable to convert 'DOE^JANE' to 'PN'")  # a library message

    monkeypatch.setattr(pipeline, "build_report", broken_report)
    code, summary = _analyze(tmp_path, shared("dicom", "pgbm-001-t1post"))
    assert code == 1
    (study,) = summary["studies"]
    assert "sr" not in _kinds(study) and "pm" in _kinds(study)
    (error,) = study["errors"]
    assert error.startswith("SR not written: ValueError in ")
    assert "DOE" not in error and "/" not in error
    assert study["prediction"]["class"] in CLASSES


def test_a_skull_base_meningioma_below_the_assessed_band_is_named_with_its_slices(
    real_archive: tuple[int, dict[str, Any]],
) -> None:
    # m025 (a training patient: this checks the rule and its outputs, not the model's reach):
    # the meningioma lies at the skull base, below the assessed band of the whole-head 3D
    # series; its long confident run is admitted to the vote, and the admitted slices are
    # marked assessed, so they get overlays and count in the SR.
    _, summary = real_archive
    st = _study(summary, M025_DESCRIPTION)
    assert st["prediction"]["class"] == "meningioma", st["prediction"]["reason"]
    (series,) = st["series"]
    assert "admitted as one long run" in series["prediction"]["reason"]
    slices = series["slices"]
    admitted = [s for s in slices if s["reason"].startswith("eligible: skull base")]
    assert len(admitted) >= 6
    assert all(s["eligible"] and s["pred"] == "meningioma" for s in admitted)
    assessed = [s for s in slices if s["eligible"]]
    n_sc = sum(1 for p in st["outputs"] if Path(p).parent.name == "sc")
    assert n_sc == len(assessed)
