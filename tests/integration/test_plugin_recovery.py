"""Failures: kill -9 of brainxai mid-job, and Orthanc down during delivery -> exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import OrthancProcess, study_dir, wait_until
from plugin_processor import SC_SERIES_NUMBER
from pydicom import dcmread

from plugin.job import JobState
from plugin.job_store import JobStore

pytestmark = pytest.mark.integration


def _sc_counts(orthanc: OrthancProcess, study_id: str) -> list[int]:
    return [
        len(s["Instances"])
        for s in orthanc.series_of(study_id)
        if s["MainDicomTags"].get("SeriesNumber") == str(SC_SERIES_NUMBER)
    ]


def _state(store: JobStore, study_uid: str, state: str, **at_least: int):
    job = store.get_by_study(study_uid)
    if job is None or job.state != state:
        return None
    return job if all(getattr(job, k) >= v for k, v in at_least.items()) else None


def _fresh_study(orthanc: OrthancProcess) -> tuple[list[Path], str]:
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    orthanc.delete_study(study_uid)
    return files, study_uid


def test_kill9_mid_job_then_restart_delivers_exactly_once(
    orthanc: OrthancProcess, brainxai_factory, tmp_path: Path
) -> None:
    files, study_uid = _fresh_study(orthanc)
    marker = tmp_path / "processing-started"
    first = brainxai_factory(BRAINXAI_TEST_MARKER=str(marker), BRAINXAI_TEST_DELAY="60")
    first.start()
    study_id = orthanc.upload(files)
    wait_until(marker.exists, 30, "processing to start")
    first.kill9()

    store = JobStore(first.data_dir / "jobs.sqlite")
    assert _state(store, study_uid, JobState.PROCESSING) is not None
    assert _sc_counts(orthanc, study_id) == []

    second = brainxai_factory(BRAINXAI_TEST_DELAY="0")
    second.start()
    job = wait_until(lambda: _state(store, study_uid, JobState.DELIVERED), 60, "delivery")
    assert job.processing_attempts == 2 and job.generation == 1
    assert _sc_counts(orthanc, study_id) == [len(files)]
    assert "resuming 1 unfinished job" in second.log_text()
    store.close()


def test_orthanc_down_during_delivery_then_back_delivers_exactly_once(
    orthanc: OrthancProcess, brainxai_factory, tmp_path: Path
) -> None:
    files, study_uid = _fresh_study(orthanc)
    marker = tmp_path / "processing-started"
    brainxai = brainxai_factory(BRAINXAI_TEST_MARKER=str(marker), BRAINXAI_TEST_DELAY="1")
    brainxai.start()
    study_id = orthanc.upload(files)
    wait_until(marker.exists, 30, "processing to start")
    orthanc.stop()
    store = JobStore(brainxai.data_dir / "jobs.sqlite")
    try:
        failing = wait_until(
            lambda: _state(store, study_uid, JobState.RESULTS_READY, attempts=2),
            30, "failed delivery attempts",
        )  # fmt: skip
        assert failing.error and failing.next_attempt_at is not None
    finally:
        orthanc.start()
    job = wait_until(lambda: _state(store, study_uid, JobState.DELIVERED), 60, "delivery")
    assert job.attempts >= 3 and job.generation == 1
    assert _sc_counts(orthanc, study_id) == [len(files)]
    assert "retry in" in brainxai.log_text()
    store.close()
