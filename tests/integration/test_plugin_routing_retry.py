"""orthanc/autorouting.lua re-sends a store that brainxai refused, after a delay.

The measured failure of the old script: brainxai refused the routed instances with 0xA700
"out of resources" (its job store was held by another process, so it could not record
them), Orthanc's store failed, the script printed the failure and the study was never
analysed, although brainxai was fine a moment later.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OrthancProcess, study_dir, wait_until
from plugin_processor import process
from pydicom import dcmread

from plugin.job import JobState
from plugin.job_store import default_path
from plugin.service.wiring import Service
from plugin.settings import Settings

pytestmark = pytest.mark.integration

# Holds an exclusive lock on the job store until its stdin is closed.
LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
db.execute("COMMIT")
"""


def test_a_refused_store_is_sent_again_after_a_delay(
    orthanc: OrthancProcess, tmp_path: Path
) -> None:
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    orthanc.delete_study(study_uid)
    settings = Settings(
        data_dir=tmp_path / "svc", dicom_host="127.0.0.1", dicom_port=orthanc.brainxai_port,
        quiet_seconds=0.3, store_busy_timeout_seconds=0.2, loop_backoff_max_seconds=0.5,
        orthanc_url=orthanc.url, orthanc_dicom_port=orthanc.dicom_port,
        delivery_backoff_seconds=0.2, delivery_backoff_max_seconds=0.5,
    )  # fmt: skip
    service = Service(settings, processor=process, api=False)
    service.start()
    log = orthanc.workdir / "orthanc.log"
    start = log.stat().st_size
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(default_path(settings))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        study_id = orthanc.upload(files)
        wait_until(
            lambda: f"brainxai routing: store of study {study_id}" in log.read_text()[start:],
            60, "the refused store in Orthanc's log",
        )  # fmt: skip
        assert locker.stdin is not None
        locker.stdin.close()  # brainxai can record studies again
        locker.wait(10)
        job = wait_until(
            lambda: (j := service.store.get_by_study(study_uid)) and j.state == JobState.DELIVERED
            and j,
            60, "the study delivered after the store was re-sent",
        )  # fmt: skip
    finally:
        if locker.poll() is None:
            locker.kill()
            locker.wait(10)
        service.stop()
    assert len(job.outputs) == len(files)
    (series,) = [s for s in orthanc.series_of(study_id) if s["MainDicomTags"]["Modality"] == "MR"]
    with orthanc.client() as c:
        routed = wait_until(
            lambda: c.get(f"/series/{series['ID']}/metadata/BrainxaiRouted").text
            if c.get(f"/series/{series['ID']}/metadata").json().count("BrainxaiRouted")
            else None,
            10, "the series marked as routed",
        )  # fmt: skip
    assert routed == str(len(files))
    assert "retry 1" in log.read_text()[start:]
