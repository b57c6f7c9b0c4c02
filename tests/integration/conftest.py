"""Integration fixtures: a real Orthanc (Debian package) and brainxai services on free ports.

Orthanc is started once per session from ``/usr/sbin/Orthanc`` with the repository's
orthanc/orthanc.json (ports, storage and script paths rewritten into a temp dir), with
TCP_NODELAY=1 in its environment, and stopped by PID. Every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.shared_data import REPO, shared

ORTHANC_BIN = Path("/usr/sbin/Orthanc")
ORTHANC_CONFIG = REPO / "orthanc" / "orthanc.json"
ARTIFACTS = REPO / "test-artifacts"
# The repository's own CLI (python -m), not an installed console script that may point
# at another checkout.
BRAINXAI = [sys.executable, "-m", "plugin.commands.cli"]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def study_dir(name: str) -> Path:
    return shared("dicom", name)


@dataclass
class OrthancProcess:
    """A real Orthanc on free ports, restartable with the same storage and ports."""

    workdir: Path
    brainxai_port: int
    stable_age: int = 1
    routing: str = "study"  # orthanc.json "Brainxai": {"Routing"}: "study" or "instance"
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = json.loads(ORTHANC_CONFIG.read_text())
        storage = self.workdir / "storage"
        cfg.update(
            Name="brainxai-test",
            HttpPort=self.http_port,
            DicomPort=self.dicom_port,
            StorageDirectory=str(storage),
            IndexDirectory=str(storage),
            StableAge=self.stable_age,
            LuaScripts=[str(REPO / "orthanc" / "autorouting.lua")],
        )
        cfg["DicomModalities"]["brainxai"]["Port"] = self.brainxai_port
        cfg["Brainxai"] = {"Routing": self.routing}
        cfg["WebViewer"]["CachePath"] = str(self.workdir / "webviewer-cache")
        folders = cfg.get("ServeFolders", {}).get("Folders", {})
        for uri, folder in list(folders.items()):  # OHIF: absolute, or left out if not set up
            path = (REPO / "orthanc" / folder).resolve()
            if path.is_dir():
                folders[uri] = str(path)
            else:
                del folders[uri]
        return cfg

    def start(self, timeout: float = 30.0) -> None:
        config = self.workdir / "orthanc.json"
        config.write_text(json.dumps(self.config(), indent=2))
        env = {**os.environ, "TCP_NODELAY": "1"}
        log = open(self.workdir / "orthanc.log", "ab")  # noqa: SIM115 (kept open by Orthanc)
        self.proc = subprocess.Popen(
            [str(ORTHANC_BIN), str(config)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        wait_until(self._answers, timeout, "Orthanc /system")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"Orthanc exited with {self.proc.returncode}: see {self.workdir}")
        try:
            return httpx.get(f"{self.url}/system", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def client(self) -> httpx.Client:
        # generous: under a loaded machine Orthanc once took over 30 s to answer a lookup
        return httpx.Client(base_url=self.url, timeout=120.0, trust_env=False)

    def delete_study(self, study_uid: str) -> None:
        with self.client() as c:
            found = c.post("/tools/lookup", content=study_uid).json()
            for item in found:
                if item["Type"] == "Study":
                    c.delete(f"/studies/{item['ID']}").raise_for_status()

    def upload(self, files: list[Path]) -> str:
        """Upload files with REST; returns the Orthanc study ID."""
        study_id = ""
        with self.client() as c:
            for path in files:
                r = c.post("/instances", content=path.read_bytes())
                r.raise_for_status()
                study_id = r.json()["ParentStudy"]
        return study_id

    def series_of(self, study_id: str) -> list[dict[str, Any]]:
        with self.client() as c:
            r = c.get(f"/studies/{study_id}/series")
            return list(r.json()) if r.status_code == 200 else []


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancProcess]:
    if not ORTHANC_BIN.is_file():
        pytest.skip(f"Orthanc not installed ({ORTHANC_BIN}): apt-get install orthanc")
    server = OrthancProcess(tmp_path_factory.mktemp("orthanc"), brainxai_port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class BrainxaiProcess:
    """``brainxai serve`` as a subprocess, with its log captured to a file."""

    data_dir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ("--no-api",)

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open by the child)
        self.proc = subprocess.Popen(
            [*BRAINXAI, "-v", "serve", *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=str(REPO),
        )  # fmt: skip
        port = int(self.env["BRAINXAI_DICOM_PORT"])
        wait_until(lambda: self._listening(port), timeout, "brainxai DICOM port")

    def _listening(self, port: int) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"brainxai exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            return None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def brainxai_factory(
    orthanc: OrthancProcess, tmp_path: Path
) -> Iterator[Callable[..., BrainxaiProcess]]:
    """Make ``brainxai serve`` subprocesses wired to the session Orthanc (SC test processor)."""
    started: list[BrainxaiProcess] = []

    def make(**extra_env: str) -> BrainxaiProcess:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO)]),
            "BRAINXAI_DATA_DIR": str(tmp_path / "brainxai"),
            "BRAINXAI_DICOM_PORT": str(orthanc.brainxai_port),
            "BRAINXAI_DICOM_HOST": "127.0.0.1",
            "BRAINXAI_ORTHANC_URL": orthanc.url,
            "BRAINXAI_ORTHANC_DICOM_PORT": str(orthanc.dicom_port),
            "BRAINXAI_QUIET_SECONDS": "0.5",
            "BRAINXAI_DELIVERY_BACKOFF_SECONDS": "0.2",
            "BRAINXAI_DELIVERY_BACKOFF_MAX_SECONDS": "1.0",
            "BRAINXAI_PROCESSOR": "plugin_processor:make_processor",
            **extra_env,
        }
        proc = BrainxaiProcess(tmp_path / "brainxai", env, tmp_path / "brainxai.log")
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
