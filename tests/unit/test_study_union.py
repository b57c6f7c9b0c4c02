"""A study is the union of its series (fast half): what the job store records, how a study
folder is completed from the PACS before an analysis, and what happens when it cannot be."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from plugin.job import Job, JobState
from plugin.job_store import JobStore
from plugin.service.assembly import complete_study, received_series
from plugin.service.worker import ProcessResult, Worker, WorkerOptions
from vocabulary.errors import NetworkError

STUDY = "1.2.826.0.1.3680043.8.498.8001"
T1, T2 = "1.2.826.0.1.3680043.8.498.8101", "1.2.826.0.1.3680043.8.498.8102"


def _dicom(path: Path, series_uid: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = path.stem
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, path.stem
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series_uid
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _processing(store: JobStore) -> Job:
    store.touch_study(STUDY, 0.0)
    store.mark_ready(STUDY, 0.0, 0.0)
    ready = store.next_ready(1.0)
    assert ready is not None
    job = store.start_processing(ready)
    assert job is not None
    return job


def test_a_job_store_of_the_earlier_version_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, study_instance_uid TEXT NOT NULL UNIQUE, "
        "state TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, "
        "updated_at REAL NOT NULL, ready_at REAL, attempts INTEGER NOT NULL DEFAULT 0, "
        "processing_attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL, "
        "delivered_at REAL, inputs_removed INTEGER NOT NULL DEFAULT 0, error TEXT, "
        "timings TEXT NOT NULL DEFAULT '{}', summary TEXT NOT NULL DEFAULT '{}', "
        "outputs TEXT NOT NULL DEFAULT '[]')"
    )
    db.execute(
        "INSERT INTO jobs (id, study_instance_uid, state, created_at, updated_at) "
        "VALUES ('j1', ?, 'delivered', 0, 0)",
        (STUDY,),
    )
    db.commit()
    db.close()
    job = JobStore(path).get("j1")
    assert job is not None and job.source_series == {} and job.published == []


def test_series_are_recorded_for_the_generation_being_processed(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    job = _processing(store)
    assert store.record_series(job, {T1: ["1.1", "1.2"]})
    store.touch_study(STUDY)  # a late instance: a new generation
    assert not store.record_series(job, {T2: ["2.1"]})
    again = store.get(job.id)
    assert again is not None and again.source_series == {T1: ["1.1", "1.2"]}


def test_published_grows_before_a_send_and_narrows_once_delivered(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    job = _processing(store)
    assert store.finish_processing(job, [], {}, 0.1)
    ready = store.get(job.id)
    assert ready is not None
    assert store.add_published(ready, ["b", "a"]) == ["a", "b"]
    assert store.add_published(ready, ["c"]) == ["a", "b", "c"]
    assert store.mark_delivered(ready, 0.1, published=["c"])
    done = store.get(job.id)
    assert done is not None and done.state == JobState.DELIVERED and done.published == ["c"]


def test_a_study_folder_is_completed_from_the_pacs(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    folder = incoming / STUDY
    _dicom(folder / "2.1.dcm", T2)  # the late series, just received
    calls: list[tuple[str, set[str]]] = []

    def fetch(study: str, series: str, wanted: set[str], into: Path) -> set[str]:
        calls.append((series, set(wanted)))
        present = wanted & {"1.1", "1.2"}  # "1.3" was deleted from the PACS
        for sop in present:
            _dicom(into / f"{sop}.dcm", series)
        return present

    earlier = {T1: ["1.1", "1.2", "1.3"]}
    job = Job(STUDY + "-job", STUDY, JobState.PROCESSING, 0, 0, 0, None, {}, {}, [],
              source_series=earlier)  # fmt: skip
    record = complete_study(job, incoming, fetch)
    assert calls == [(T1, {"1.1", "1.2", "1.3"})]
    assert record == {T1: ["1.1", "1.2"], T2: ["2.1"]}
    assert received_series(folder, {}) == record  # the same, from the headers alone


def test_an_unreachable_pacs_puts_the_job_back_with_the_reason(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    job = _processing(store)
    store.record_series(job, {T1: ["1.1"]})
    store.finish_processing(job, [], {}, 0.1)
    store.touch_study(STUDY)  # a later series arrives (the T1 files are gone)
    _dicom(tmp_path / "incoming" / STUDY / "2.1.dcm", T2)
    store.mark_ready(STUDY, 0.0, 0.0)

    def down(study: str, series: str, wanted: set[str], into: Path) -> set[str]:
        raise NetworkError("Orthanc POST /tools/find: ConnectError")

    def never(paths: list[Path], out: Path) -> ProcessResult:
        raise AssertionError("analysed without the earlier series")

    options = WorkerOptions(tmp_path / "incoming", tmp_path / "results", max_processing_attempts=1)
    worker = Worker(store, never, options, fetch=down)
    with pytest.raises(NetworkError):
        worker.run_once()
    back = store.get_by_study(STUDY)
    assert back is not None and back.state == JobState.RECEIVED
    assert back.error is not None
    assert back.error.startswith("earlier series not restored from the PACS: Orthanc POST")
    store.mark_ready(STUDY, 0.0, 0.0)
    worker.run_once()  # the attempts are used up: failed, with the last reason
    failed = store.get_by_study(STUDY)
    assert failed is not None and failed.state == JobState.FAILED
    assert failed.error is not None and "not restored from the PACS" in failed.error
    assert failed.source_series == {T1: ["1.1"]}  # kept for the retry
