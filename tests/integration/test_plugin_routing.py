"""Full run: upload to Orthanc -> Lua auto-routing -> brainxai serve -> results in the study."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import (
    ARTIFACTS,
    BRAINXAI,
    BrainxaiProcess,
    OrthancProcess,
    free_port,
    study_dir,
    wait_until,
)
from PIL import Image
from plugin_processor import SC_SERIES_NUMBER
from pydicom import dcmread

from plugin.job import JobState
from plugin.job_store import JobStore

pytestmark = pytest.mark.integration


def sc_series(orthanc: OrthancProcess, study_id: str) -> dict | None:
    for s in orthanc.series_of(study_id):
        if s["MainDicomTags"].get("SeriesNumber") == str(SC_SERIES_NUMBER):
            return s
    return None


def delivered_job(store: JobStore, study_uid: str):
    job = store.get_by_study(study_uid)
    return job if job is not None and job.state == JobState.DELIVERED else None


def stays(condition, seconds: float) -> bool:
    """True if ``condition`` holds at every poll during ``seconds`` (a negative check)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not condition():
            return False
        time.sleep(0.1)
    return True


def screenshot(url: str, out: Path, tmp: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp / 'chromium'}", "--hide-scrollbars",
         "--virtual-time-budget=8000", f"--screenshot={out}", "--window-size=1024,768", url],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip


def test_routed_study_is_processed_and_results_land_in_the_same_study(
    orthanc: OrthancProcess, brainxai_factory, tmp_path: Path
) -> None:
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))
    first = dcmread(files[0], stop_before_pixels=True)
    study_uid = str(first.StudyInstanceUID)
    orthanc.delete_study(study_uid)
    http_port = free_port()
    brainxai: BrainxaiProcess = brainxai_factory(
        BRAINXAI_HTTP_PORT=str(http_port), BRAINXAI_ALLOW_NO_AUTH="true"
    )
    brainxai.args = ()  # with the HTTP API
    brainxai.start(timeout=60)

    study_id = orthanc.upload(files)
    store = JobStore(brainxai.data_dir / "jobs.sqlite")
    job = wait_until(lambda: delivered_job(store, study_uid), 60, "results delivered")

    # the SC series is in the same study, once per input instance
    series = wait_until(lambda: sc_series(orthanc, study_id), 10, "SC series in Orthanc")
    assert len(series["Instances"]) == len(files)
    assert len(job.outputs) == len(files)
    originals = [s for s in orthanc.series_of(study_id) if s["ID"] != series["ID"]]
    assert [len(s["Instances"]) for s in originals] == [len(files)]
    timings = job.timings
    incoming = brainxai.data_dir / "incoming" / study_uid
    wait_until(lambda: not incoming.exists(), 10, "inputs removed after delivery (retention 0)")
    assert timings["end_to_end_s"] > 0 and timings["processing_s"] > 0

    # results arriving in the study must not route it again (no loop)
    def still_once() -> bool:
        j = store.get_by_study(study_uid)
        return j is not None and j.generation == 1 and j.state == JobState.DELIVERED

    assert stays(still_once, 3.0), "the study was routed again after our results arrived"
    with orthanc.client() as c:
        routed = c.get(f"/series/{originals[0]['ID']}/metadata/BrainxaiRouted").text
    assert routed == str(len(files))

    # the HTTP API of the same service lists the job
    r = httpx.get(f"http://127.0.0.1:{http_port}/v1/jobs", timeout=10, trust_env=False)
    assert r.status_code == 200 and job.id in r.text

    # the SC series renders in Orthanc's web viewer (headless Chromium)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "orthanc-webviewer-sc.png"
    shot.unlink(missing_ok=True)
    screenshot(f"{orthanc.url}/web-viewer/app/viewer.html?series={series['ID']}", shot, tmp_path)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert img.shape == (768, 1024)
    assert img.std() > 10, "the viewer page looks blank"

    # no patient name or ID anywhere in the service's log of the full run
    assert brainxai.stop() == 0  # graceful shutdown on SIGTERM
    log = brainxai.log_text()
    assert "delivered and confirmed" in log and "service stopped" in log
    for value in (str(first.PatientName), str(first.PatientID)):
        assert value and value not in log
    store.close()


def test_demo_command_uploads_waits_and_prints_timings(
    orthanc: OrthancProcess, brainxai_factory, tmp_path: Path
) -> None:
    folder = study_dir("pgbm-001-t1post")
    brainxai = brainxai_factory()
    brainxai.start()
    orthanc.upload(sorted(folder.glob("*.dcm"))[:1])  # already present: needs --replace
    demo = subprocess.run(
        [*BRAINXAI, "demo", "--study", str(folder), "--orthanc", orthanc.url,
         "--replace", "--timeout", "60"],
        env=brainxai.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-2000:]
    out = demo.stdout
    assert "24 result instance(s) confirmed in Orthanc" in out
    assert "end of routed association -> results confirmed" in out
    assert "brainxai test SC" in out
    print(out)


def test_routing_while_brainxai_is_down_then_manual_send(
    orthanc: OrthancProcess, brainxai_factory
) -> None:
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    orthanc.delete_study(study_uid)
    log = orthanc.workdir / "orthanc.log"
    start = log.stat().st_size
    study_id = orthanc.upload(files)  # nothing listens on the brainxai port
    wait_until(
        lambda: f"brainxai routing: store of study {study_id}" in log.read_text()[start:],
        30, "the routing failure in Orthanc's log",
    )  # fmt: skip
    (series,) = orthanc.series_of(study_id)
    with orthanc.client() as c:
        assert "BrainxaiRouted" not in c.get(f"/series/{series['ID']}/metadata").json()

    brainxai = brainxai_factory()
    brainxai.start()
    with orthanc.client() as c:
        body = {"Resources": [series["ID"]], "Synchronous": True}
        c.post("/modalities/brainxai/store", json=body).raise_for_status()
    store = JobStore(brainxai.data_dir / "jobs.sqlite")
    wait_until(lambda: delivered_job(store, study_uid), 60, "results of the manual send")
    sc = wait_until(lambda: sc_series(orthanc, study_id), 10, "SC series")
    assert len(sc["Instances"]) == len(files)
    store.close()


SC_PM_SR = {
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map Storage
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR Storage
}


@pytest.mark.slow
def test_real_pipeline_results_land_in_the_same_study(
    orthanc: OrthancProcess, brainxai_factory
) -> None:
    from inference.bundle import BUNDLED_MODEL

    model = Path(os.environ.get("BRAINXAI_TEST_MODEL", BUNDLED_MODEL))
    if not model.is_file():
        pytest.skip(f"model missing: {model} (bundled, or set BRAINXAI_TEST_MODEL)")
    files = sorted(study_dir("pgbm-001-t1post").glob("*.dcm"))
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    orthanc.delete_study(study_uid)
    brainxai = brainxai_factory(BRAINXAI_PROCESSOR="", BRAINXAI_MODEL=str(model))  # the pipeline
    brainxai.start(timeout=120)
    study_id = orthanc.upload(files)
    store = JobStore(brainxai.data_dir / "jobs.sqlite")
    job = wait_until(lambda: delivered_job(store, study_uid), 180, "pipeline results delivered")
    classes: set[str] = set()
    with orthanc.client() as c:
        for s in orthanc.series_of(study_id):
            first = s["Instances"][0]
            classes.add(c.get(f"/instances/{first}/metadata/SopClassUid").text)
    assert classes >= SC_PM_SR
    assert sum(len(s["Instances"]) for s in orthanc.series_of(study_id)) == len(files) + len(
        job.outputs
    )
    (study,) = job.summary["studies"]
    assert study["sentence"].startswith(("Finding: ", "Indeterminate: "))
    listed = [*study["outputs"], *(p for se in study["series"] for p in se["outputs"])]
    assert listed and not [p for p in listed if ".partial" in p]  # the published folder
    store.close()
