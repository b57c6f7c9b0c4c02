"""/healthz and /readyz with a real Orthanc on a free port (no plugins, temp storage)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import free_port, make_app, make_context, make_settings
from fastapi.testclient import TestClient

from plugin.api.app import create_app

pytestmark = pytest.mark.integration

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
USER, PASSWORD = "brainxai", "readyz-secret"


@pytest.fixture
def orthanc_auth(tmp_path: Path) -> Iterator[str]:
    if not os.access(ORTHANC, os.X_OK):
        pytest.skip("Orthanc is not installed")
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "brainxai-test",
        "StorageDirectory": str(tmp_path / "orthanc-db"),
        "IndexDirectory": str(tmp_path / "orthanc-db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [],
    }
    cfg = tmp_path / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = (tmp_path / "orthanc.log").open("w")
    proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{url}/system", auth=(USER, PASSWORD), timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("Orthanc did not start: " + (tmp_path / "orthanc.log").read_text())
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_ready_with_model_store_and_orthanc(tmp_path: Path, orthanc_auth: str) -> None:
    app = make_app(tmp_path, orthanc_url=orthanc_auth, orthanc_username=USER,
                   orthanc_password=PASSWORD)  # fmt: skip
    client = TestClient(app)
    r = client.get("/readyz")  # no token needed
    assert r.status_code == 200, r.text
    assert r.json()["ready"] is True
    assert set(r.json()["checks"]) == {"model", "job_store", "orthanc"}


def test_wrong_orthanc_password_is_not_ready(tmp_path: Path, orthanc_auth: str) -> None:
    app = make_app(tmp_path, orthanc_url=orthanc_auth, orthanc_username=USER,
                   orthanc_password="wrong")  # fmt: skip
    r = TestClient(app).get("/readyz")
    assert r.status_code == 503
    assert "401" in r.json()["checks"]["orthanc"]["detail"]


def test_not_ready_reasons(tmp_path: Path) -> None:
    """No model, and nothing listening at the Orthanc URL: 503 with a reason per check."""
    client = TestClient(make_app(tmp_path, with_model=False))
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["model"] == {"ok": False, "detail": "no model loaded"}
    assert checks["orthanc"]["ok"] is False and "unreachable" in checks["orthanc"]["detail"]
    assert checks["job_store"]["ok"] is True


def test_unwritable_job_store_is_not_ready(tmp_path: Path) -> None:
    """A job store path whose folder is a regular file cannot be written (even by root)."""
    settings = make_settings(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    ctx = make_context(settings)
    ctx.jobs_path = blocker / "jobs.sqlite"
    r = TestClient(create_app(settings, ctx)).get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["job_store"]["ok"] is False
