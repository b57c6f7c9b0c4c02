"""A small client of Orthanc's REST API and DICOMweb STOW-RS (PS3.18 10.5), over httpx.

Only UIDs and Orthanc identifiers are logged.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from vocabulary.errors import NetworkError

log = logging.getLogger(__name__)

# DICOM JSON tag of FailedSOPSequence in a STOW-RS response (PS3.18 10.5.3).
_FAILED_SOP_SEQUENCE = "00081198"


@dataclass(frozen=True)
class OrthancOptions:
    url: str = "http://127.0.0.1:8042"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0


class OrthancClient:
    def __init__(self, options: OrthancOptions) -> None:
        self.options = options
        auth = (options.username, options.password or "") if options.username else None
        self._http = httpx.Client(
            base_url=options.url.rstrip("/"), auth=auth, timeout=options.timeout, trust_env=False
        )

    def __enter__(self) -> OrthancClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise NetworkError(f"Orthanc {method} {path}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise NetworkError(f"Orthanc {method} {path}: HTTP {response.status_code}")
        return response

    def get(self, path: str) -> Any:
        return self._request("GET", path).json()

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, json=body).json()

    def system(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/system")
        return result

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """Poll /system until Orthanc answers or the deadline passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.system()
            except NetworkError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def delete(self, path: str) -> None:
        self._request("DELETE", path)

    def upload_instance(self, data: bytes) -> dict[str, Any]:
        """POST /instances; returns Orthanc's answer (ID, ParentStudy, Status, ...)."""
        result: dict[str, Any] = self._request(
            "POST", "/instances", content=data, headers={"Content-Type": "application/dicom"}
        ).json()
        return result

    def upload(self, data: bytes) -> str:
        """POST /instances; returns the Orthanc instance ID."""
        return str(self.upload_instance(data)["ID"])

    def stow(self, files: Iterable[bytes]) -> None:
        """Store instances by DICOMweb STOW-RS (POST {dicom-web}/studies, PS3.18 10.5)."""
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []
        for data in files:
            parts += [
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
                data,
                b"\r\n",
            ]
        parts.append(f"--{boundary}--\r\n".encode())
        response = self._request(
            "POST",
            "/dicom-web/studies",
            content=b"".join(parts),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
        )
        body = response.json() if response.content else {}
        if isinstance(body, dict) and body.get(_FAILED_SOP_SEQUENCE, {}).get("Value"):
            raise NetworkError("STOW-RS: the PACS refused some instances")

    def lookup(self, uid: str, kind: str = "Study") -> str | None:
        """Orthanc ID of the resource with this DICOM UID (POST /tools/lookup)."""
        for item in self._request("POST", "/tools/lookup", content=uid).json():
            if item.get("Type") == kind:
                return str(item["ID"])
        return None

    def find_instances(self, study_uid: str, series_uid: str) -> list[tuple[str, str]]:
        """(SOP Instance UID, Orthanc ID) of every instance of one series (POST /tools/find)."""
        found = self.post(
            "/tools/find",
            {
                "Level": "Instance",
                "Query": {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid},
                "Expand": True,
            },
        )
        return [(str(i["MainDicomTags"].get("SOPInstanceUID", "")), str(i["ID"])) for i in found]

    def find_sop_uids(self, study_uid: str, series_uid: str) -> list[str]:
        """SOP Instance UIDs of one series (with repeats if Orthanc held duplicates)."""
        return [sop for sop, _ in self.find_instances(study_uid, series_uid)]

    def instance_file(self, instance_id: str) -> bytes:
        """The stored DICOM file of an instance (GET /instances/{id}/file).

        Asked for uncompressed: httpx offers gzip by default and Orthanc then deflates each
        file on the fly, about 10 ms for a 170 kB MR slice against 0.4 ms without (measured
        on 127.0.0.1), which made fetching a 24-slice study back 0.2 s slower."""
        path = f"/instances/{instance_id}/file"
        return self._request("GET", path, headers={"Accept-Encoding": "identity"}).content

    def delete_instance(self, sop_uid: str) -> bool:
        """Delete the instance with this SOP Instance UID (POST /tools/lookup, then DELETE
        /instances/{id}); False when Orthanc does not hold it (already gone)."""
        instance_id = self.lookup(sop_uid, "Instance")
        if instance_id is None:
            return False
        try:
            response = self._http.request("DELETE", f"/instances/{instance_id}")
        except httpx.HTTPError as exc:
            raise NetworkError(f"Orthanc DELETE /instances/{instance_id}: "
                               f"{type(exc).__name__}") from exc  # fmt: skip
        if response.status_code == 404:
            return False  # deleted meanwhile (by someone else)
        if response.status_code >= 400:
            raise NetworkError(
                f"Orthanc DELETE /instances/{instance_id}: HTTP {response.status_code}"
            )
        return True

    def study_series(self, study_uid: str) -> list[dict[str, Any]]:
        """The series of a study (expanded), or [] if Orthanc does not hold the study."""
        study_id = self.lookup(study_uid, "Study")
        if study_id is None:
            return []
        result: list[dict[str, Any]] = self.get(f"/studies/{study_id}/series")
        return result
