"""Issue 12, service half: real archives never break a study.

Real services on free ports (the in-process Service with its DICOM node, a real Orthanc for
delivery where results must land), a real second process holding the job store's SQLite
lock, and polling with deadlines. Each test is a measured failure of the old code:

- a study arriving while another process holds the job store: instances were acknowledged
  without a job (first 0xC211, then Success) and never processed;
- the store locked while a job finishes: the worker thread died, every later study stayed
  "received" while /readyz stayed green;
- files left in incoming/ without a job were never processed;
- a dead loop thread did not make /readyz fail;
- a wrong *called* AE title was accepted; received files and jobs.sqlite were 0644;
- a study whose every instance is refused ended "delivered" with no error.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from api_support import AUTH, make_context
from conftest import OrthancProcess, free_port, study_dir, wait_until
from fastapi.testclient import TestClient
from plugin_processor import SC_SERIES_NUMBER, process
from pydicom import dcmread
from pynetdicom import AE

from dicom_io.network import Peer, echo, read_instance_ref, store_files
from plugin import metrics
from plugin.api.app import create_app
from plugin.job import Job, JobState
from plugin.job_store import JobStore
from plugin.service.wiring import Service, ServiceContext, pipeline_processor
from plugin.settings import Settings
from vocabulary.errors import NetworkError

pytestmark = pytest.mark.integration

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


@contextmanager
def locked(path: Path, seconds: float) -> Iterator[None]:
    """Another process holds an exclusive lock on the job store for ``seconds``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    try:
        yield
    finally:
        proc.wait(timeout=60)


def make_settings(tmp: Path, orthanc: OrthancProcess | None = None, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp / "svc",
        "dicom_host": "127.0.0.1",
        "dicom_port": free_port(),
        "quiet_seconds": 0.3,
        "store_busy_timeout_seconds": 0.2,
        "loop_backoff_max_seconds": 0.5,
        "delivery_backoff_seconds": 0.2,
        "delivery_backoff_max_seconds": 0.5,
        "orthanc_url": orthanc.url if orthanc else f"http://127.0.0.1:{free_port()}",
        "orthanc_dicom_port": orthanc.dicom_port if orthanc else free_port(),
    }
    values.update(extra)
    return Settings(**values)


@contextmanager
def running(service: Service) -> Iterator[Service]:
    service.start()
    try:
        yield service
    finally:
        service.stop()


def peer(settings: Settings, called: str = "BRAINXAI") -> Peer:
    return Peer("127.0.0.1", settings.dicom_port, called, calling_aet="ORTHANC", timeout=20)


def pgbm(orthanc: OrthancProcess | None = None) -> tuple[list[Path], str]:
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    if orthanc is not None:
        orthanc.delete_study(study_uid)
    return files, study_uid


def job_in(store: JobStore, study_uid: str, state: str, outputs: int = 0) -> Job | None:
    job = store.get_by_study(study_uid)
    ok = job is not None and job.state == state and len(job.outputs) >= outputs
    return job if ok else None


def sc_count(orthanc: OrthancProcess, study_uid: str) -> int:
    with orthanc.client() as c:
        found = c.post("/tools/lookup", content=study_uid).json()
    ids = [f["ID"] for f in found if f["Type"] == "Study"]
    return sum(
        len(s["Instances"])
        for sid in ids
        for s in orthanc.series_of(sid)
        if s["MainDicomTags"].get("SeriesNumber") == str(SC_SERIES_NUMBER)
    )


def loops_ok(service: Service) -> bool:
    return all(ok for ok, _ in service.loop_status().values())


def test_instances_arriving_while_the_store_is_locked_are_refused_never_lost(
    orthanc: OrthancProcess, tmp_path: Path
) -> None:
    files, study_uid = pgbm(orthanc)
    # the store is held longer than a call waits for it (the measured case: 8 s vs 5 s)
    settings = make_settings(tmp_path, orthanc, store_busy_timeout_seconds=1.0)
    with running(Service(settings, processor=process, api=False)) as service:
        refs = [read_instance_ref(f) for f in files]
        ae = AE(ae_title="ORTHANC")
        for ctx in sorted({(r.sop_class_uid, r.transfer_syntax_uid) for r in refs}):
            ae.add_requested_context(*ctx)
        statuses: dict[Path, int] = {}
        with locked(service.store.path, 6.0):
            assoc = ae.associate("127.0.0.1", settings.dicom_port, ae_title="BRAINXAI")
            assert assoc.is_established
            try:
                for f in files:
                    statuses[f] = int(assoc.send_c_store(f).Status)
                    if statuses[f] == 0x0000:  # acknowledged: its study has a job
                        assert service.store.get_by_study(study_uid) is not None
            finally:
                assoc.release()
        refused = [f for f, s in statuses.items() if s == 0xA700]
        assert set(statuses.values()) <= {0x0000, 0xA700}, statuses.values()
        assert refused and refused[0] == files[0]
        store_files(peer(settings), refused)  # the sender retries what was refused
        job = wait_until(
            lambda: job_in(service.store, study_uid, JobState.DELIVERED, len(files)),
            60, "every instance processed and delivered",
        )  # fmt: skip
        assert len(job.outputs) == len(files)
        assert wait_until(lambda: sc_count(orthanc, study_uid) == len(files), 20, "SC in Orthanc")
        assert loops_ok(service)


def test_worker_and_delivery_outlive_a_store_locked_mid_job(
    orthanc: OrthancProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files, study_uid = pgbm(orthanc)
    release = threading.Event()
    started = threading.Event()

    def held(paths: list[Path], out: Path) -> Any:
        started.set()
        release.wait(30)
        return process(paths, out)

    settings = make_settings(tmp_path, orthanc, retention_hours=1.0)  # keep the 1st inputs
    with running(Service(settings, processor=held, api=False)) as service:
        store_files(peer(settings), files[:6])
        wait_until(started.is_set, 30, "processing to start")
        with locked(service.store.path, 6.0):  # longer than the old 5 s busy timeout
            release.set()  # the job finishes while another process holds the store
        wait_until(lambda: job_in(service.store, study_uid, JobState.DELIVERED, 6), 60,
                   "the job delivered after the lock")  # fmt: skip
        # the same threads take the next study
        store_files(peer(settings), files[6:])
        wait_until(lambda: job_in(service.store, study_uid, JobState.DELIVERED, len(files)),
                   60, "the next generation delivered")  # fmt: skip
        assert "worker: cannot record the results yet (OperationalError" in caplog.text
        assert loops_ok(service), service.loop_status()
        assert {t.name for t in service._threads if t.is_alive()} >= {
            "brainxai-worker", "brainxai-delivery", "brainxai-housekeeping",
        }  # fmt: skip


def test_files_in_incoming_without_a_job_are_adopted_at_start(
    orthanc: OrthancProcess, tmp_path: Path
) -> None:
    files, study_uid = pgbm(orthanc)
    settings = make_settings(tmp_path, orthanc)
    folder = settings.data_dir / "incoming" / study_uid
    folder.mkdir(parents=True)
    for f in files:  # acknowledged by an earlier run that never recorded a job
        shutil.copy(f, folder / f"{read_instance_ref(f).sop_instance_uid}.dcm")
    with running(Service(settings, processor=process, api=False)) as service:
        job = wait_until(
            lambda: job_in(service.store, study_uid, JobState.DELIVERED, len(files)),
            60, "the orphaned study processed and delivered",
        )  # fmt: skip
        assert len(job.outputs) == len(files)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_loop_thread_makes_readyz_fail(orthanc: OrthancProcess, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, orthanc, api_token="test-token-0123456789abcdef")
    service = Service(settings, processor=process, api=False)
    kill = threading.Event()
    original = service.deliverer.run_once

    def run_once() -> bool:
        if kill.is_set():
            raise SystemExit("the delivery thread ends here")  # not an Exception: not retried
        return original()

    service.deliverer.run_once = run_once  # type: ignore[method-assign]
    with running(service):
        client = TestClient(create_app(settings, make_context(settings)))
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["loops"]["ok"] is True
        kill.set()
        service.deliverer.wake.set()
        wait_until(lambda: not loops_ok(service), 10, "the delivery thread to end")
        r = client.get("/readyz")
        assert r.status_code == 503
        loops = r.json()["checks"]["loops"]
        assert loops["ok"] is False and "delivery stopped" in loops["detail"]
        assert client.get("/healthz").status_code == 200


def test_a_wrong_called_ae_title_is_refused(tmp_path: Path) -> None:
    files, study_uid = pgbm()
    settings = make_settings(tmp_path)
    with running(Service(settings, processor=process, api=False)) as service:
        echo(peer(settings))
        with pytest.raises(NetworkError, match="rejected"):
            echo(peer(settings, called="NOT-BRAINXAI"))
        with pytest.raises(NetworkError, match="rejected"):
            store_files(peer(settings, called="PACS"), files[:2])
        assert service.store.get_by_study(study_uid) is None


def test_received_files_results_and_job_store_are_private_and_metrics_move(
    tmp_path: Path,
) -> None:
    files, study_uid = pgbm()
    settings = make_settings(tmp_path)  # nothing listens where results go
    received = metrics.REGISTRY.render()
    with running(Service(settings, processor=process, api=False)) as service:
        store_files(peer(settings), files[:3])
        job = wait_until(
            lambda: (j := job_in(service.store, study_uid, JobState.RESULTS_READY, 3))
            and j.attempts >= 1 and j,
            30, "results and a failed delivery attempt",
        )  # fmt: skip
        data = settings.data_dir
        incoming = data / "incoming" / study_uid
        results = data / "results"
        for folder in (data, data / "incoming", incoming, results, results / job.id):
            assert folder.stat().st_mode & 0o777 == 0o700, folder
        received_files = list(incoming.glob("*.dcm"))
        assert len(received_files) == 3
        for path in [*received_files, *map(Path, job.outputs), data / "jobs.sqlite"]:
            assert path.stat().st_mode & 0o777 == 0o600, path
        text = metrics.REGISTRY.render()
    for name, at_least in (("received_instances", 3), ("delivery_retries", 1)):
        before = _value(received, f"brainxai_{name}_total")
        assert _value(text, f"brainxai_{name}_total") - before >= at_least, name
    assert (
        _value(text, "brainxai_received_instances_total")
        - _value(received, "brainxai_received_instances_total")
        == 3
    )


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_a_study_whose_every_instance_is_refused_ends_no_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files, study_uid = pgbm()
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in files[:5]:  # MR instances the reader refuses: no pixel data
        ds = dcmread(f)
        del ds.PixelData
        ds.save_as(broken / f.name)
    settings = make_settings(tmp_path, api_token="test-token-0123456789abcdef")
    # the real pipeline; the classifier is never reached (every file is refused first)
    context = ServiceContext(settings, cast(JobStore, None), get_classifier=lambda: object())
    service = Service(settings, processor=pipeline_processor(context), api=False)
    caplog.set_level(logging.INFO, logger="plugin.service.worker")
    with running(service):
        store_files(peer(settings), sorted(broken.glob("*.dcm")))
        job = wait_until(lambda: job_in(service.store, study_uid, JobState.NO_RESULT), 60,
                         "the no_result end state")  # fmt: skip
        assert job.outputs == [] and job.delivered_at is None
        assert job.error is not None and "no pixel data" in job.error and "(x5)" in job.error
        assert "/" not in job.error.replace("no pixel data", "")
        client = TestClient(create_app(settings, make_context(settings, with_model=False)))
        body = client.get(f"/v1/jobs/{job.id}", headers=AUTH).json()
        assert body["state"] == "no_result" and body["error"] == job.error
        assert len(body["summary"]["rejected"]) == 5
    assert f"no result for study {study_uid}" in caplog.text
