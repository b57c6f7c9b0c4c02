"""Failure stays local in the pipeline: one object kind or one study failing never stops
the others, and the recorded reason is one line without values or paths."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicom_io.reader import ReadResult
from dicom_io.series import Series
from plugin import pipeline
from vocabulary.errors import DicomError


def _boom(exc: Exception) -> Any:
    def build() -> list[Dataset]:
        raise exc

    return build


def test_write_object_records_library_failures_without_the_value(tmp_path: Path) -> None:
    failures: list[str] = []
    build = _boom(ValueError("Unable to convert '000000' to 'DA' object"))
    assert pipeline.write_object(build, tmp_path, "SR", failures) == []
    (line,) = failures
    assert line.startswith("SR not written: ValueError in unit.test_pipeline_failures line ")
    assert "000000" not in line and "\n" not in line


def test_write_object_records_our_errors_and_unexpected_ones(tmp_path: Path) -> None:
    failures: list[str] = []
    pipeline.write_object(_boom(DicomError("bad header in /x/Doe/1.dcm")), tmp_path, "SC", failures)
    pipeline.write_object(_boom(ZeroDivisionError("1/0")), tmp_path, "PM gradcam", failures)
    assert failures[0] == "SC not written: bad header in <path>"
    assert failures[1].startswith("PM gradcam not written: unexpected ZeroDivisionError in ")


def test_written_objects_are_returned(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.Modality = "OT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    failures: list[str] = []
    written: list[Any] = []
    paths = pipeline.write_object(lambda: [ds], tmp_path, "SC", failures, written.extend)
    assert failures == [] and len(paths) == 1 and paths[0].is_file()
    assert written == [ds]  # handed on (the SR references it) once written


def test_objects_not_written_are_not_handed_on(tmp_path: Path) -> None:
    written: list[Any] = []
    build = _boom(ValueError("bad"))
    assert pipeline.write_object(build, tmp_path, "PM", [], written.extend) == []
    assert written == []


def _series(study_uid: str) -> Series:
    return Series(study_uid, study_uid + ".1", "MR", "T1", Dataset(), ())


def test_one_failing_study_never_stops_the_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    read = ReadResult([_series("1.2.3"), _series("1.2.4"), _series("1.2.5")], [])
    monkeypatch.setattr(pipeline, "read_paths", lambda paths: read)

    def analyze_study(series_list: list[Series], *args: Any, **kwargs: Any) -> Any:
        uid = series_list[0].study_instance_uid
        if uid == "1.2.3":
            raise KeyError("PatientName 'Doe^Jane'")
        if uid == "1.2.4":
            raise DicomError("cannot decode '/data/Doe^Jane/1.dcm'")
        return pipeline.StudyAnalysis(uid, [], label="glioma", reason="test")

    monkeypatch.setattr(pipeline, "analyze_study", analyze_study)
    clf = SimpleNamespace(meta=SimpleNamespace(name="m"), version="1")
    args: Any = ([tmp_path], clf, tmp_path)
    summary = pipeline.analyze_paths(*args, isolate_studies=True)
    a, b, c = summary["studies"]
    assert a["error"].startswith("KeyError in unit.test_pipeline_failures line ")
    assert a["prediction"]["class"] == "error" and a["errors"] == [a["error"]]
    assert b["error"] == "cannot decode <value>"
    assert c["prediction"]["class"] == "glioma" and "error" not in c
    assert c["errors"] == [] and c["warnings"] == []
    for st in (a, b):
        assert "Doe" not in st["error"] and "\n" not in st["error"]
    with pytest.raises(KeyError):  # the service's way: one job, one study, failure raised
        pipeline.analyze_paths(*args)
