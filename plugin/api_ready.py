"""``GET /readyz`` checks: model loaded, job store writable, Orthanc reachable."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import httpx

from plugin.model_service import ModelService
from plugin.schemas import CheckResult, ReadinessResponse
from plugin.settings import Settings

log = logging.getLogger(__name__)

ORTHANC_TIMEOUT_S = 2.0


def readiness(
    settings: Settings, models: ModelService, jobs_path: Path | None
) -> ReadinessResponse:
    checks = {
        "model": check_model(models),
        "job_store": check_writable(jobs_path),
        "orthanc": check_orthanc(settings),
    }
    return ReadinessResponse(ready=all(c.ok for c in checks.values()), checks=checks)


def check_model(models: ModelService) -> CheckResult:
    if not models.loaded:
        return CheckResult(ok=False, detail="no model loaded")
    o = models.current().origin
    return CheckResult(ok=True, detail=f"{o.name} {o.version}")


def check_writable(path: Path | None) -> CheckResult:
    """The job store's folder accepts a new file, and its database file (if any) is writable."""
    if path is None:
        return CheckResult(ok=False, detail="no job store configured")
    folder = path if path.is_dir() else path.parent
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".readyz-"):
            pass
    except OSError as exc:
        return CheckResult(ok=False, detail=f"job store folder not writable: {exc.strerror}")
    if path.is_file() and not os.access(path, os.W_OK):
        return CheckResult(ok=False, detail="job store file not writable")
    return CheckResult(ok=True, detail="writable")


def check_orthanc(settings: Settings) -> CheckResult:
    """GET <orthanc_url>/system answers 200 (Orthanc REST API)."""
    auth = None
    if settings.orthanc_username:
        auth = (settings.orthanc_username, settings.orthanc_password or "")
    url = settings.orthanc_url.rstrip("/") + "/system"
    try:
        r = httpx.get(url, auth=auth, timeout=ORTHANC_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return CheckResult(ok=False, detail=f"Orthanc unreachable: {type(exc).__name__}")
    if r.status_code != 200:
        return CheckResult(ok=False, detail=f"Orthanc /system answered HTTP {r.status_code}")
    return CheckResult(ok=True, detail="reachable")
