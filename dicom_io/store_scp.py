"""The DICOM node: a Storage SCP (PS3.4 Annex B) and Verification SCP (PS3.4 Annex A).

- Only calling AE titles on the allow-list may associate; others are rejected during
  association negotiation (PS3.8 7.1.1.9: result 1 rejected-permanent, reason 3
  "calling AE title not recognised").
- Each instance is written durably (file fsync, atomic rename, directory fsync) to
  ``incoming/<StudyInstanceUID>/<SOPInstanceUID>.dcm`` *before* the success status is
  returned, so a stored instance survives a crash of the process or the machine.
- TCP_NODELAY is set on every accepted socket (see dicom_io.network).

Only UIDs are logged, never patient data.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydicom.errors import InvalidDicomError
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicom_io.network import MR_STORAGE_CLASSES, is_valid_uid, set_tcp_nodelay
from inference.errors import BrainxaiError, NetworkError

log = logging.getLogger(__name__)

# C-STORE failure statuses (PS3.4 B.2.3)
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


class InstanceSink(Protocol):
    """Receives notifications from the SCP; implemented by study assembly."""

    def instance_arriving(self, assoc_id: int, study_uid: str) -> None:
        """Called before an instance of ``study_uid`` is written (may raise to refuse it)."""

    def instance_stored(self, assoc_id: int, study_uid: str, sop_uid: str) -> None:
        """Called after the instance is durably on disk."""

    def association_closed(self, assoc_id: int) -> None:
        """Called once the association's connection is closed, whatever the reason."""


@dataclass(frozen=True)
class ScpOptions:
    ae_title: str
    incoming_dir: Path
    host: str = "0.0.0.0"
    port: int = 11112
    allowed_calling_aets: tuple[str, ...] = ("ORTHANC",)
    sop_classes: tuple[str, ...] = MR_STORAGE_CLASSES
    fsync: bool = True
    tcp_nodelay: bool = True  # False only to measure its effect (bench)
    max_pdu: int = 0  # 0 = unlimited (PS3.8 D.1)


def fsync_dir(path: Path) -> None:
    """fsync a directory so that entries created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), fsyncing file and directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


class StoreScp:
    """A Storage + Verification SCP that hands stored instances to an InstanceSink."""

    def __init__(self, options: ScpOptions, sink: InstanceSink) -> None:
        self.options = options
        self.sink = sink
        self._server: ThreadedAssociationServer | None = None
        self._dirs: set[str] = set()
        self._dirs_lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound TCP port (useful when started with port 0)."""
        if self._server is None:
            raise NetworkError("the DICOM node is not running")
        return int(self._server.server_address[1])

    def start(self) -> None:
        opts = self.options
        opts.incoming_dir.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=opts.ae_title)
        ae.maximum_pdu_size = opts.max_pdu
        ae.require_calling_aet = list(opts.allowed_calling_aets)
        ae.add_supported_context(Verification)
        for sop_class in opts.sop_classes:
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        handlers: Any = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_CONN_CLOSE, self._handle_close),
        ]
        if opts.tcp_nodelay:
            handlers.append((evt.EVT_CONN_OPEN, set_tcp_nodelay))
        try:
            self._server = ae.start_server(
                (opts.host, opts.port), block=False, evt_handlers=handlers
            )
        except OSError as exc:
            raise NetworkError(f"cannot listen on {opts.host}:{opts.port}: {exc}") from exc
        log.info("DICOM node %s listening on %s:%d", opts.ae_title, opts.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
            log.info("DICOM node stopped")

    def _study_dir(self, study_uid: str) -> Path:
        path = self.options.incoming_dir / study_uid
        with self._dirs_lock:
            if study_uid in self._dirs and path.is_dir():
                return path
            created = not path.is_dir()
            path.mkdir(parents=True, exist_ok=True)
            if created and self.options.fsync:
                fsync_dir(self.options.incoming_dir)
            self._dirs.add(study_uid)
        return path

    def _handle_store(self, event: evt.Event) -> int:
        assoc_id = id(event.assoc)
        request: Any = event.request
        sop_uid = str(request.AffectedSOPInstanceUID)
        try:
            study_uid = str(event.dataset.StudyInstanceUID)
        except (AttributeError, InvalidDicomError, ValueError, KeyError):
            log.warning("instance %s has no readable StudyInstanceUID: refused", sop_uid)
            return STATUS_CANNOT_UNDERSTAND
        if not (is_valid_uid(study_uid) and is_valid_uid(sop_uid)):
            log.warning("instance with an invalid UID refused")
            return STATUS_CANNOT_UNDERSTAND
        try:
            self.sink.instance_arriving(assoc_id, study_uid)
            path = self._study_dir(study_uid) / f"{sop_uid}.dcm"
            write_durably(path, event.encoded_dataset(include_meta=True), self.options.fsync)
            self.sink.instance_stored(assoc_id, study_uid, sop_uid)
        except (OSError, BrainxaiError) as exc:
            log.error("cannot store instance %s of study %s: %s", sop_uid, study_uid, exc)
            return STATUS_OUT_OF_RESOURCES
        return STATUS_SUCCESS

    def _handle_close(self, event: evt.Event) -> None:
        self.sink.association_closed(id(event.assoc))


def allowed_aets(values: Sequence[str]) -> tuple[str, ...]:
    """Normalise an allow-list of AE titles (trimmed, non-empty, at most 16 characters)."""
    out = tuple(v.strip() for v in values if v.strip())
    for v in out:
        if len(v) > 16:
            raise NetworkError(f"AE title longer than 16 characters: {v!r}")
    return out
