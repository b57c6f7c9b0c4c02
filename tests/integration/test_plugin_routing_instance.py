"""orthanc/autorouting.lua in per-instance mode ("Brainxai": {"Routing": "instance"}).

Each original MR instance is sent to brainxai as it is stored, one store job per instance;
brainxai assembles the study by association end + quiet period. Orthanc's StableAge is set
to an hour here, so a study can only reach brainxai through the per-instance routing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ORTHANC_BIN, OrthancProcess, free_port, study_dir, wait_until
from plugin_processor import process
from pydicom import dcmread
from test_plugin_routing_retry import LOCKER

from plugin.job import JobState
from plugin.job_store import default_path
from plugin.service.wiring import Service
from plugin.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def orthanc_per_instance(tmp_path: Path) -> Iterator[OrthancProcess]:
    if not ORTHANC_BIN.is_file():
        pytest.skip(f"Orthanc not installed ({ORTHANC_BIN}): apt-get install orthanc")
    server = OrthancProcess(
        tmp_path / "orthanc", brainxai_port=free_port(), stable_age=3600, routing="instance"
    )
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _service(orthanc: OrthancProcess, data_dir: Path) -> Service:
    settings = Settings(
        data_dir=data_dir, dicom_host="127.0.0.1", dicom_port=orthanc.brainxai_port,
        quiet_seconds=0.5, store_busy_timeout_seconds=0.2, loop_backoff_max_seconds=0.5,
        orthanc_url=orthanc.url, orthanc_dicom_port=orthanc.dicom_port,
        delivery_backoff_seconds=0.2, delivery_backoff_max_seconds=0.5,
    )  # fmt: skip
    return Service(settings, processor=process, api=False)


def _complete(service: Service, study_uid: str, n: int) -> object:
    """The study's job once delivered with results for all ``n`` instances."""
    job = service.store.get_by_study(study_uid)
    if job is None or job.state != JobState.DELIVERED or len(job.outputs) != n:
        return None
    return job


def test_each_instance_is_routed_as_it_is_stored(
    orthanc_per_instance: OrthancProcess, tmp_path: Path
) -> None:
    orthanc = orthanc_per_instance
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    service = _service(orthanc, tmp_path / "svc")
    service.start()
    try:
        study_id = orthanc.upload(files)
        job = wait_until(lambda: _complete(service, study_uid, len(files)), 120, "results")
    finally:
        service.stop()
    assert job is not None
    log = (orthanc.workdir / "orthanc.log").read_text()
    sent = [line for line in log.splitlines() if "brainxai routing: sending instance" in line]
    assert len(sent) == len(files)
    assert " series of study " not in log  # the study route (OnStableStudy) did not run
    # The results (not MR) went back into the study and were not routed again.
    series = orthanc.series_of(study_id)
    assert any(s["MainDicomTags"]["Modality"] != "MR" for s in series)


def test_a_refused_instance_is_sent_again(
    orthanc_per_instance: OrthancProcess, tmp_path: Path
) -> None:
    orthanc = orthanc_per_instance
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    service = _service(orthanc, tmp_path / "svc")
    service.start()
    log = orthanc.workdir / "orthanc.log"
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(default_path(service.settings))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        orthanc.upload(files)
        wait_until(lambda: "failed; retry 1" in log.read_text(), 60, "a refused store")
        assert locker.stdin is not None
        locker.stdin.close()  # brainxai can record studies again
        locker.wait(10)
        job = wait_until(lambda: _complete(service, study_uid, len(files)), 120, "results")
    finally:
        if locker.poll() is None:
            locker.kill()
            locker.wait(10)
        service.stop()
    assert job is not None
    assert "given up" not in log.read_text()
    assert "could not be re-submitted" not in log.read_text()
