"""DICOM networking as a service user (SCU): C-ECHO, C-STORE and C-FIND (PS3.4 Annex A, B, C).

Every association sets TCP_NODELAY on its socket: DIMSE is a request/response protocol of
small PDUs, and with Nagle's algorithm each exchange waits for the peer's delayed ACK
(measured here: ~22 instead of ~245 instances/s).
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from vocabulary.errors import DicomError, NetworkError

log = logging.getLogger(__name__)

# Identifiers in C-FIND requests/responses may carry patient data: never log them.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False

#: MR storage SOP classes accepted by the node (PS3.4 Annex B.5).
MR_STORAGE_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color Image Storage
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
)

_REF_TAGS = ["SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"]
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# C-STORE statuses that mean "stored" (PS3.4 B.2.3): success and the warnings.
_STORED_STATUSES = {0x0000, 0xB000, 0xB007, 0xB006}


def is_valid_uid(uid: str) -> bool:
    """True when ``uid`` is a syntactically valid UID (PS3.5 9.1), hence safe as a file name."""
    return 0 < len(uid) <= 64 and bool(_UID_RE.match(uid))


def set_tcp_nodelay(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: disable Nagle's algorithm on the association's socket."""
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def socket_has_nodelay(assoc: Association) -> bool:
    """Whether TCP_NODELAY is set on an association's socket (for tests and diagnostics)."""
    sock = assoc.dul.socket.socket if assoc.dul.socket else None
    return bool(sock and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


NODELAY_HANDLERS: Any = [(evt.EVT_CONN_OPEN, set_tcp_nodelay)]


@dataclass(frozen=True)
class Peer:
    """A remote DICOM application entity."""

    host: str
    port: int
    ae_title: str
    calling_aet: str = "BRAINXAI"
    timeout: float = 30.0


@dataclass(frozen=True)
class InstanceRef:
    """The identifying attributes of a stored DICOM file (no patient data)."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    transfer_syntax_uid: str


def read_instance_ref(path: Path) -> InstanceRef:
    """Read the UIDs of a DICOM file without its pixel data."""
    try:
        ds = dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=[
                "SOPClassUID",
                "SOPInstanceUID",
                "SeriesInstanceUID",
                "StudyInstanceUID",
            ],
        )
        return InstanceRef(
            path=path,
            sop_class_uid=str(ds.SOPClassUID),
            sop_instance_uid=str(ds.SOPInstanceUID),
            series_instance_uid=str(ds.SeriesInstanceUID),
            study_instance_uid=str(ds.StudyInstanceUID),
            transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        )
    except (OSError, AttributeError, ValueError) as exc:
        raise DicomError(f"cannot read the UIDs of {path.name}: {exc}") from exc


def _ae(calling_aet: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    return ae


def _associate(ae: AE, peer: Peer) -> Association:
    try:
        assoc = ae.associate(
            peer.host, peer.port, ae_title=peer.ae_title, evt_handlers=NODELAY_HANDLERS
        )
    except OSError as exc:
        raise NetworkError(f"cannot connect to {peer.ae_title}@{peer.host}:{peer.port}") from exc
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted or unreachable"
        raise NetworkError(f"association with {peer.ae_title}@{peer.host}:{peer.port} {why}")
    return assoc


def echo(peer: Peer) -> None:
    """C-ECHO the peer (PS3.4 A.4); raises NetworkError unless it answers with success."""
    ae = _ae(peer.calling_aet, peer.timeout)
    ae.add_requested_context(Verification)
    assoc = _associate(ae, peer)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or status.Status != 0x0000:
        raise NetworkError(f"C-ECHO to {peer.ae_title} failed")


def store_files(peer: Peer, paths: Sequence[Path]) -> list[InstanceRef]:
    """C-STORE files to the peer on one association (PS3.4 B.2).

    Proposes one presentation context per (SOP class, transfer syntax) found in the files.
    Raises NetworkError when the association fails or any instance is not stored.
    """
    refs = [read_instance_ref(p) for p in paths]
    if not refs:
        return []
    ae = _ae(peer.calling_aet, peer.timeout)
    contexts = sorted({(r.sop_class_uid, r.transfer_syntax_uid) for r in refs})
    if len(contexts) > 128:
        raise NetworkError("more than 128 presentation contexts needed for one association")
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    assoc = _associate(ae, peer)
    try:
        for ref in refs:
            try:
                status = assoc.send_c_store(ref.path)
            except ValueError as exc:  # no accepted presentation context for this class
                raise NetworkError(f"{peer.ae_title} does not accept {ref.sop_class_uid}") from exc
            code = getattr(status, "Status", None)
            if code not in _STORED_STATUSES:
                shown = "none" if code is None else f"0x{code:04X}"
                raise NetworkError(f"C-STORE of {ref.sop_instance_uid} failed: status {shown}")
    finally:
        if assoc.is_established:
            assoc.release()
    log.debug("stored %d instance(s) at %s", len(refs), peer.ae_title)
    return refs


def find_instances(peer: Peer, refs: Iterable[InstanceRef]) -> set[str]:
    """C-FIND at IMAGE level, Study Root (PS3.4 C.6.2), one query per series.

    Uses list-of-UID matching (PS3.4 C.2.2.2.2) on SOPInstanceUID and returns the SOP
    Instance UIDs the peer reports as present.
    """
    by_series: dict[tuple[str, str], list[str]] = {}
    for ref in refs:
        key = (ref.study_instance_uid, ref.series_instance_uid)
        by_series.setdefault(key, []).append(ref.sop_instance_uid)
    ae = _ae(peer.calling_aet, peer.timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = _associate(ae, peer)
    found: set[str] = set()
    try:
        for (study, series), uids in by_series.items():
            query = Dataset()
            query.QueryRetrieveLevel = "IMAGE"
            query.StudyInstanceUID = study
            query.SeriesInstanceUID = series
            query.SOPInstanceUID = uids
            for status, identifier in assoc.send_c_find(
                query, StudyRootQueryRetrieveInformationModelFind
            ):
                code = getattr(status, "Status", None)
                if code is None or code not in (0x0000, 0xFF00, 0xFF01):
                    raise NetworkError("C-FIND failed" + (f": 0x{code:04X}" if code else ""))
                if identifier is not None and "SOPInstanceUID" in identifier:
                    found.add(str(identifier.SOPInstanceUID))
    finally:
        if assoc.is_established:
            assoc.release()
    return found
