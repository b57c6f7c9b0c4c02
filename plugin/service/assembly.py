"""Study assembly: decide when a received study is complete enough to process.

A study is ready when every association that delivered instances of it has ended and no
instance has arrived for ``quiet_seconds``. DICOM has no "end of study" message (a modality
may send each series on its own association), so this quiet period is the only signal.
Instances arriving later re-trigger the study's job (see JobStore.touch_study).

No instance is acknowledged without a job: the SCP asks ``instance_arriving`` before it
writes an instance, and a study counts as received on an association only once its job is
recorded. If the job store cannot record it (locked by another process, say), the call
raises JobError and the SCP refuses the instance with "out of resources", so the sender
retries it; the next instance of the study tries again. A "ready" mark the store refuses
when an association closes is kept and retried (``flush_pending``, from the worker loop).
At start-up, ``adopt_orphans`` gives a job to received files that have none (for example
files acknowledged by an older version, or a job store restored from a backup).

A study is the union of its series. A modality, or Orthanc's routing, may send a study's
series on separate associations minutes or hours apart, and each arrival re-triggers the
study's job; its result (the SR's study finding, one per study) must be computed from every
series received so far, never from the last association alone. The choice made here: keep
the *inputs*, not per-series results. The received instances stay in ``incoming/`` until
the job is delivered and the retention (``retention_hours``) has passed; the job store
records which instances each analysis used (``Job.source_series``: SOP Instance UIDs per
series). When a later series re-triggers a study whose earlier files the retention already
removed, ``complete_study`` fetches the missing instances back from the PACS they were
routed from (Orthanc's REST API: /tools/find, GET /instances/{id}/file) before the analysis
runs, so the re-analysis sees the whole study and a late series never erases an earlier
finding, while retention 0 h still leaves no patient data on disk between analyses.
Instances the PACS no longer holds (deleted there) are left out, with a warning; when the
PACS cannot be reached the job is put back and retried (see plugin.worker.Worker).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dicom_io.network import is_valid_uid, read_instance_ref
from plugin import metrics
from plugin.job import FINAL_STATES, Job
from plugin.job_store import JobStore, private_dir
from plugin.service.orthanc_client import OrthancClient, OrthancOptions
from vocabulary.errors import JobError, NetworkError

log = logging.getLogger(__name__)


@dataclass
class _StudyActivity:
    open_associations: int = 0
    last_instance_at: float = 0.0
    instances: int = 0


@dataclass
class _AssociationActivity:
    studies: set[str] = field(default_factory=set)


class StudyAssembler:
    """The SCP's InstanceSink: tracks activity per study and marks studies ready in the store.

    ``lock`` also guards input removal (retention) against instances arriving for the
    same study, see plugin.worker.remove_delivered_inputs.
    """

    def __init__(
        self,
        store: JobStore,
        quiet_seconds: float,
        on_ready: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.quiet_seconds = quiet_seconds
        self.on_ready = on_ready
        self.clock = clock
        self.lock = threading.RLock()
        self._studies: dict[str, _StudyActivity] = {}
        self._associations: dict[int, _AssociationActivity] = {}
        self._pending: dict[str, tuple[float, float]] = {}  # study -> (ready_at, last)

    def instance_arriving(self, assoc_id: int, study_uid: str) -> None:
        """Record the study's job before its first instance on this association is written;
        raises JobError (the instance is refused) when the job store cannot record it."""
        with self.lock:
            assoc = self._associations.setdefault(assoc_id, _AssociationActivity())
            if study_uid in assoc.studies:
                return
            try:
                job = self.store.touch_study(study_uid, self.clock())
            except sqlite3.Error as exc:
                raise JobError(f"job store unavailable ({type(exc).__name__}: {exc})") from exc
            assoc.studies.add(study_uid)
            self._pending.pop(study_uid, None)  # receiving again: not ready any more
            study = self._studies.setdefault(study_uid, _StudyActivity())
            study.open_associations += 1
            log.info(
                "receiving study %s (job %s, generation %d)", study_uid, job.id, job.generation
            )

    def instance_stored(self, assoc_id: int, study_uid: str, sop_uid: str) -> None:
        metrics.inc_received()
        with self.lock:
            study = self._studies.setdefault(study_uid, _StudyActivity())
            study.last_instance_at = self.clock()
            study.instances += 1

    def association_closed(self, assoc_id: int) -> None:
        with self.lock:
            assoc = self._associations.pop(assoc_id, None)
            if assoc is None:
                return
            for study_uid in assoc.studies:
                study = self._studies.get(study_uid)
                if study is None:
                    continue
                study.open_associations -= 1
                if study.open_associations > 0:
                    continue
                last = study.last_instance_at or self.clock()
                self._pending[study_uid] = (last + self.quiet_seconds, last)
                log.info(
                    "study %s complete: %d instance(s), ready in %.1f s",
                    study_uid,
                    study.instances,
                    self.quiet_seconds,
                )
                del self._studies[study_uid]
        self.flush_pending()

    def flush_pending(self) -> bool:
        """Mark ready in the store the studies whose associations all ended. A mark the
        store refuses stays pending for the next call. Returns whether any was marked."""
        marked = False
        with self.lock:
            for study_uid, (ready_at, last) in list(self._pending.items()):
                try:
                    self.store.mark_ready(study_uid, ready_at, last)
                except sqlite3.Error as exc:
                    log.warning("study %s: cannot mark it ready yet (%s); will retry",
                                study_uid, type(exc).__name__)  # fmt: skip
                    break  # the store is unavailable: the others would wait in vain too
                del self._pending[study_uid]
                marked = True
        if marked:
            self.on_ready()
        return marked

    def is_receiving(self, study_uid: str) -> bool:
        """Whether an association is currently delivering instances of this study."""
        with self.lock:
            study = self._studies.get(study_uid)
            return bool(study and study.open_associations > 0)


def adopt_orphans(
    store: JobStore, incoming_dir: Path, quiet_seconds: float, now: float | None = None
) -> int:
    """Give a job to received instances that no job accounts for; returns how many studies.

    A study folder is adopted when it holds instances and its study has no job, or a
    finished job (delivered, no_result, failed) older than the newest instance. Its job is
    created (or re-triggered) and made ready after the quiet period.
    """
    if not incoming_dir.is_dir():
        return 0
    now = time.time() if now is None else now
    adopted = 0
    for folder in sorted(p for p in incoming_dir.iterdir() if p.is_dir()):
        study_uid = folder.name
        files = list(folder.glob("*.dcm"))
        if not files or not is_valid_uid(study_uid):
            continue
        newest = max(f.stat().st_mtime for f in files)
        job = store.get_by_study(study_uid)
        if job is not None and (job.state not in FINAL_STATES or newest <= job.updated_at):
            continue
        store.touch_study(study_uid, now)
        store.mark_ready(study_uid, now + quiet_seconds, newest)
        log.warning("study %s: %d received instance(s) without a job: adopted", study_uid,
                    len(files))  # fmt: skip
        adopted += 1
    return adopted


# ---- a study is the union of its series -----------------------------------------------------
#: Fetch instances of one series from the PACS into a folder: (study UID, series UID, wanted
#: SOP Instance UIDs, folder) -> the SOP Instance UIDs written. Raises NetworkError.
Fetcher = Callable[[str, str, set[str], Path], set[str]]


def received_series(folder: Path, known: dict[str, list[str]]) -> dict[str, list[str]]:
    """SOP Instance UIDs per series of the instances in a study folder (files are named by
    SOP Instance UID; headers are read only for instances ``known`` does not place)."""
    series_of = {sop: series for series, sops in known.items() for sop in sops}
    out: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.dcm")) if folder.is_dir() else []:
        series = series_of.get(path.stem)
        if series is None:
            try:
                series = read_instance_ref(path).series_instance_uid
            except Exception:  # noqa: BLE001 (not DICOM, truncated: the reader says why)
                continue
        out.setdefault(series, []).append(path.stem)
    return out


def complete_study(job: Job, incoming_dir: Path, fetch: Fetcher | None) -> dict[str, list[str]]:
    """Make ``incoming/<study>`` hold every instance the study's earlier analyses used
    (``job.source_series``), fetching the missing ones from the PACS; returns what the folder
    now holds, per series (to record as the new ``source_series``). Raises NetworkError
    when the PACS cannot be asked (the caller retries later)."""
    folder = incoming_dir / job.study_instance_uid
    local = {p.stem for p in folder.glob("*.dcm")} if folder.is_dir() else set()
    for series_uid, sops in sorted(job.source_series.items()):
        missing = set(sops) - local
        if not missing:
            continue
        if fetch is None:
            log.warning("study %s: %d earlier instance(s) of series %s are gone and no PACS "
                        "is configured to restore them", job.study_instance_uid, len(missing),
                        series_uid)  # fmt: skip
            continue
        try:
            got = fetch(job.study_instance_uid, series_uid, missing, folder)
        except NetworkError as exc:
            raise NetworkError(f"earlier series not restored from the PACS: {exc}") from exc
        log.info("study %s: %d earlier instance(s) of series %s restored from the PACS",
                 job.study_instance_uid, len(got), series_uid)  # fmt: skip
        if missing - got:
            log.warning("study %s: %d earlier instance(s) of series %s are no longer in the "
                        "PACS: analysed without them", job.study_instance_uid,
                        len(missing - got), series_uid)  # fmt: skip
    return received_series(folder, job.source_series)


def _write_private(path: Path, data: bytes, durable: bool = True) -> None:
    """Write a received instance 0600, atomically (temp file + rename), fsynced if
    ``durable``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def orthanc_fetcher(options: OrthancOptions, durable: bool = True, parallel: int = 1) -> Fetcher:
    """A Fetcher that reads instances back from Orthanc's REST API, ``parallel`` downloads
    at a time. ``durable=False`` skips the fsync: for scratch copies that are removed after
    the job (distributed workers), Orthanc keeping the originals."""

    def fetch(study_uid: str, series_uid: str, wanted: set[str], folder: Path) -> set[str]:
        with OrthancClient(options) as client:
            found = dict(sorted(client.find_instances(study_uid, series_uid)))
            todo = [(s, i) for s, i in found.items() if s in wanted and is_valid_uid(s)]
            if todo:
                private_dir(folder)

            def one(item: tuple[str, str]) -> str:
                sop, instance_id = item
                _write_private(folder / f"{sop}.dcm", client.instance_file(instance_id), durable)
                return sop

            with ThreadPoolExecutor(max(1, parallel)) as pool:  # httpx.Client is thread-safe
                return set(pool.map(one, todo))

    return fetch
