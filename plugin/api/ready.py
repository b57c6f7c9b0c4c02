"""``GET /readyz`` checks: model loaded, job store writable with room to spare, Orthanc
reachable, and (when the service runs them) its loops alive and making progress.

- ``job_store``: its folder accepts a new file, the database file is writable, and the file
  system has at least ``settings.min_free_mb`` free (``os.statvfs``; at 0 bytes free a tiny
  test file may still fit, instances would not).
- ``loops`` (only when a service registered them with ``set_loops_source``): the worker,
  delivery and housekeeping threads are alive and none has failed without a break for
  ``settings.loop_unready_seconds``. A dead loop thread means no study is processed (or
  delivered) any more, so the service is not ready.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from plugin.api.schemas import CheckResult, ReadinessResponse
from plugin.settings import Settings

if TYPE_CHECKING:
    from plugin.model_service import ModelService

log = logging.getLogger(__name__)

ORTHANC_TIMEOUT_S = 2.0
MB = 1024 * 1024

#: {loop name: (ok, detail)}, e.g. plugin.service.wiring.Service.loop_status
LoopsSource = Callable[[], Mapping[str, tuple[bool, str]]]


class _LoopsRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._source: LoopsSource | None = None

    def set(self, source: LoopsSource | None) -> None:
        with self._lock:
            self._source = source

    def get(self) -> LoopsSource | None:
        with self._lock:
            return self._source

    def unset(self, source: LoopsSource) -> None:
        with self._lock:
            if self._source == source:
                self._source = None


_LOOPS = _LoopsRegistry()


def set_loops_source(source: LoopsSource | None) -> None:
    """Register (or, with None, remove) the callback reporting the service's loops."""
    _LOOPS.set(source)


def unset_loops_source(source: LoopsSource) -> None:
    """Remove ``source`` if it is the one registered (a stopping service)."""
    _LOOPS.unset(source)


def readiness(
    settings: Settings, models: ModelService, jobs_path: Path | None
) -> ReadinessResponse:
    checks = {
        "model": check_model(models),
        "job_store": check_writable(jobs_path, int(settings.min_free_mb * MB)),
        "orthanc": check_orthanc(settings),
    }
    loops = _LOOPS.get()
    if loops is not None:
        checks["loops"] = check_loops(loops)
    return ReadinessResponse(ready=all(c.ok for c in checks.values()), checks=checks)


def check_model(models: ModelService) -> CheckResult:
    if not models.loaded:
        return CheckResult(ok=False, detail="no model loaded")
    o = models.current().origin
    return CheckResult(ok=True, detail=f"{o.name} {o.version}")


def check_writable(path: Path | None, min_free_bytes: int = 0) -> CheckResult:
    """The job store's folder accepts a new file, its database file (if any) is writable,
    and at least ``min_free_bytes`` are free there."""
    if path is None:
        return CheckResult(ok=False, detail="no job store configured")
    folder = path if path.is_dir() else path.parent
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".readyz-"):
            pass
        st = os.statvfs(folder)
    except OSError as exc:
        return CheckResult(ok=False, detail=f"job store folder not writable: {exc.strerror}")
    if path.is_file() and not os.access(path, os.W_OK):
        return CheckResult(ok=False, detail="job store file not writable")
    free = st.f_bavail * st.f_frsize
    if free < min_free_bytes:
        return CheckResult(
            ok=False,
            detail=f"only {free // MB} MB free, {min_free_bytes // MB} MB required",
        )
    return CheckResult(ok=True, detail=f"writable, {free // MB} MB free")


def check_loops(source: LoopsSource) -> CheckResult:
    try:
        status = dict(source())
    except Exception as exc:  # noqa: BLE001 (reported as not ready, with the type)
        log.warning("cannot read the service loops' status: %s", type(exc).__name__)
        return CheckResult(ok=False, detail=f"loop status unavailable: {type(exc).__name__}")
    bad = [detail for ok, detail in status.values() if not ok]
    if bad:
        return CheckResult(ok=False, detail="; ".join(bad))
    return CheckResult(ok=True, detail="; ".join(detail for _, detail in status.values()))


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
