"""The C-STORE SCP (dicom_io.store_scp) on a real association as a fuzz target."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.shared_data import DICOM, REPO

from .encoding import encode_case, load_seed, pgbm_seeds
from .mutations import Case, GenerationError, SetMeta
from .outcomes import Crash, FuzzFailure, crash_of, guarded
from .targets import check_read_result

# pynetdicom's answer when our handler raised, and dicom_io.store_scp's own answer to
# "a failure of ours we did not foresee": either way an unforeseen exception, a finding.
STATUS_HANDLER_EXCEPTION = 0xC211
LOGGERS_WITH_TRACEBACKS = {"pynetdicom": logging.ERROR, "dicom_io.store_scp": logging.DEBUG}


class _HandlerErrors(logging.Handler):
    """Collects log records that carry an exception (tracebacks from the SCP's handlers)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            with self.lock_:
                self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        with self.lock_:
            out, self.records = self.records, []
        return out


@dataclass
class ScpHarness:
    """The project's Storage SCP and study assembler on a free port, as the service runs it."""

    workdir: Path
    scp: Any = None
    store: Any = None
    errors: _HandlerErrors = field(default_factory=_HandlerErrors)
    valid_file: Path | None = None
    counter: int = 0
    dimse_timeout: float = 8.0  # seconds the sender waits for the SCP's C-STORE response
    _saved_levels: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        from dicom_io.store_scp import ScpOptions, StoreScp
        from plugin.job_store import JobStore
        from plugin.service.assembly import StudyAssembler

        self.store = JobStore(self.workdir / "jobs.sqlite")
        assembler = StudyAssembler(self.store, quiet_seconds=0.2)
        opts = ScpOptions(
            ae_title="BRAINXAI",
            incoming_dir=self.workdir / "incoming",
            host="127.0.0.1",
            port=0,
            allowed_calling_aets=("ORTHANC",),
            fsync=False,
        )
        self.scp = StoreScp(opts, assembler)
        self.scp.start()
        # Exceptions in the C-STORE handler: pynetdicom logs those that escape it (ERROR),
        # dicom_io.store_scp logs the traceback of those it turns into 0xC211 (DEBUG).
        for name, level in LOGGERS_WITH_TRACEBACKS.items():
            logger = logging.getLogger(name)
            self._saved_levels[name] = logger.level
            if logger.getEffectiveLevel() > level:
                logger.setLevel(level)
            logger.addHandler(self.errors)
        self.valid_file = DICOM / pgbm_seeds()[0]

    def stop(self) -> None:
        for name, level in self._saved_levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self.errors)
            logger.setLevel(level)
        if self.scp is not None:
            self.scp.stop()
        if self.store is not None:
            self.store.close()

    def _associate(self, contexts: Sequence[tuple[str, str]]) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title="ORTHANC")
        ae.acse_timeout = ae.network_timeout = 10
        ae.dimse_timeout = self.dimse_timeout
        for sop_class, ts in contexts:
            ae.add_requested_context(sop_class, ts)
        return ae.associate("127.0.0.1", self.scp.port, ae_title="BRAINXAI")

    def send(self, path: Path, contexts: Sequence[tuple[str, str]]) -> tuple[Any, Any]:
        """C-STORE a file as it is on disk (not re-encoded). Returns (status, association).

        The association is aborted if sending raises (so none is left open on the SCP).
        """
        from pynetdicom import _config

        assoc = self._associate(contexts)
        if not assoc.is_established:
            return None, assoc
        saved = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            status = assoc.send_c_store(path)
        except BaseException:
            assoc.abort()
            raise
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = saved
        return status, assoc

    def send_valid(self, assoc: Any = None) -> int | None:
        from pynetdicom import _config

        assert self.valid_file is not None
        seed = load_seed(pgbm_seeds()[0])
        ctx = (
            seed.meta["MediaStorageSOPClassUID"].decode(),
            seed.meta["TransferSyntaxUID"].decode(),
        )
        own = assoc is None or not assoc.is_established
        if own:
            assoc = self._associate([ctx])
            if not assoc.is_established:
                return None
        saved = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            status = assoc.send_c_store(self.valid_file)
        except (ValueError, RuntimeError):
            status = None
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = saved
            if own and assoc.is_established:
                assoc.release()
        return getattr(status, "Status", None)


def _contexts_for(meta: dict[str, bytes]) -> list[tuple[str, str]]:
    def text(v: bytes) -> str:
        return v.rstrip(b"\x00 ").decode("ascii", errors="replace")

    sop_class = text(meta.get("MediaStorageSOPClassUID", b""))
    ts = text(meta.get("TransferSyntaxUID", b""))
    out = [(sop_class, ts)] if _plausible_uid(sop_class) and _plausible_uid(ts) else []
    # Also propose the MR class in explicit little endian, so a context exists for the
    # valid instance sent after the fuzzed one on the same association.
    out.append(("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.1.2.1"))
    return out


def _plausible_uid(uid: str) -> bool:
    return 0 < len(uid) <= 64 and all(c.isdigit() or c == "." for c in uid)


def run_scp(case: Case, scp: ScpHarness) -> str:
    """C-STORE the mutated file; the SCP must answer with a status and stay up.

    Success is followed by the worker's read of the stored file (read_paths), which must
    hold the reader's property too.
    """
    from dicom_io.reader import read_paths

    desc = case.describe()
    try:
        enc = encode_case(case)
    except GenerationError:
        return "not generated"
    scp.counter += 1
    tmp = scp.workdir / "send" / f"{scp.counter}.dcm"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(enc.data)
    meta = dict(load_seed(case.seed).meta)
    for m in case.mutations:
        if isinstance(m, SetMeta):
            meta[m.keyword] = m.value
    scp.errors.take()
    assoc = None
    try:
        try:
            status, assoc = scp.send(tmp, _contexts_for(meta))
        except Exception as exc:  # noqa: BLE001 - raised by pynetdicom on the sending side
            # The sender cannot send it (no file meta, no accepted presentation context, ...):
            # nothing reached our handler; the SCP must still be up.
            _check_up(scp, desc, None)
            return f"not sendable ({type(exc).__name__})"
        if not assoc.is_established and status is None and not assoc.is_aborted:
            _check_up(scp, desc, None)
            return "association refused"
        code = getattr(status, "Status", None)
        _raise_for_scp_errors(scp, desc, code)
        _check_up(scp, desc, assoc)
        if code == 0x0000:
            stored = _stored_path(scp, meta)
            if stored is not None:
                guarded(
                    "scp->reader",
                    desc,
                    lambda: check_read_result(read_paths([stored]), 1, "scp->reader", desc),
                )
        return _status_outcome(code)
    finally:
        if assoc is not None and assoc.is_established:
            assoc.abort()
        tmp.unlink(missing_ok=True)


def _ours(record: logging.LogRecord) -> bool:
    """Whether a logged exception passed through the project's code (our SCP handlers)."""
    exc = record.exc_info[1] if record.exc_info else None
    if exc is None:
        return False
    return any(
        f.filename.startswith(str(REPO))
        and "/.venv/" not in f.filename
        and "/tests/" not in f.filename
        for f in traceback.extract_tb(exc.__traceback__)
    )


def _raise_for_scp_errors(scp: ScpHarness, desc: str, code: int | None) -> None:
    """An exception in our handlers (0xC211 or logged), or no status at all, is a failure."""
    records = scp.errors.take()
    ours = [r for r in records if _ours(r)]
    if ours or code == STATUS_HANDLER_EXCEPTION:
        exc = ours[0].exc_info[1] if ours and ours[0].exc_info else None
        if isinstance(exc, BaseException):
            raise FuzzFailure(crash_of("scp", desc, exc))
        raise FuzzFailure(Crash("scp", desc, "HandlerException", f"status {code:#06x}", []))
    if code is None:
        why = ""
        if records and records[0].exc_info and records[0].exc_info[1] is not None:
            why = f"; pynetdicom logged {crash_of('scp', desc, records[0].exc_info[1]).report()}"
        raise FuzzFailure(
            Crash("scp", desc, "NoStatus", "no C-STORE response (timeout or abort)" + why, [])
        )


def _check_up(scp: ScpHarness, desc: str, assoc: Any) -> None:
    """A valid C-STORE succeeds after the case: on the same association if it is still up,
    else (or if that fails) on a new one."""
    after = scp.send_valid(assoc) if assoc is not None and assoc.is_established else None
    if assoc is not None and assoc.is_established:
        assoc.release()
    if after == 0x0000:
        return
    fresh = scp.send_valid()
    if fresh != 0x0000:
        msg = f"valid C-STORE after the case: {after!r}, on a new association: {fresh!r}"
        raise FuzzFailure(Crash("scp", desc, "ScpDown", msg, []))


def _status_outcome(code: int | None) -> str:
    if code is None:
        return "no status (aborted)"
    if code == 0x0000:
        return "stored"
    if code in (0xB000, 0xB006, 0xB007):
        return "stored with warning"
    return f"refused {code:#06x}"


def _stored_path(scp: ScpHarness, meta: dict[str, bytes]) -> Path | None:
    sop = meta.get("MediaStorageSOPInstanceUID", b"").rstrip(b"\x00 ").decode("ascii", "replace")
    found = list((scp.workdir / "incoming").glob(f"*/{sop}.dcm")) if _plausible_uid(sop) else []
    return found[0] if found else None
