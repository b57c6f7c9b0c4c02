"""Delivery of result instances back to Orthanc, confirmed before a job counts as delivered.

Sending: C-STORE (default), DICOMweb STOW-RS, or Orthanc's REST API (POST /instances).
Confirming: Orthanc's REST API (/tools/find per series) or C-FIND at IMAGE level.

Exactly once: results carry deterministic UIDs and Orthanc runs with OverwriteInstances
true, so re-sending after a crash or a lost confirmation replaces the same instances rather
than adding copies; confirmation also checks that no SOP Instance UID appears twice.

Exactly one current set: a re-analysis (a later series, a series that grew, another model
version) can produce fewer or other instances than the set already in the PACS (the SR is
one per study and keeps its UID; SC overlays are one per eligible slice, so a grown series
gives other SC instances; SC/PM UIDs are per source series). Before each send the job store
records the instances being sent as *published* (they may be in the PACS from then on);
once the new set is confirmed, every published instance not in it is deleted from Orthanc
(REST: /tools/lookup by SOP Instance UID, then DELETE /instances/{id}), and only then is
the job delivered, its published set narrowed to the current one. The new set is stored
before the old one is removed, so the study never lacks a result; a removal that fails is
retried with the delivery. Removal uses Orthanc's REST API whatever the delivery method.

The delivery loop runs under plugin.service.loops.run_loop: a job-store error (the database locked
by another process) is retried with backoff instead of ending the thread. A failed attempt
that is scheduled again counts in ``brainxai_delivery_retries_total``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from dicom_io.network import InstanceRef, Peer, find_instances, read_instance_ref, store_files
from plugin import metrics
from plugin.job import Backoff, Job, one_line
from plugin.job_store import JobStore
from plugin.service.loops import LoopHealth, LoopSpec, run_loop, store_wait_time
from plugin.service.orthanc_client import OrthancClient, OrthancOptions
from vocabulary.errors import BrainxaiError, NetworkError

log = logging.getLogger(__name__)

METHODS = ("cstore", "stowrs", "rest")
CONFIRMATIONS = ("rest", "cfind")


@dataclass(frozen=True)
class DeliveryOptions:
    peer: Peer
    orthanc: OrthancOptions = field(default_factory=OrthancOptions)
    method: str = "cstore"
    confirm: str = "rest"
    backoff: Backoff = field(default_factory=Backoff)
    poll_seconds: float = 1.0
    stow_batch: int = 32
    loop_backoff_max: float = 30.0


def send(paths: list[Path], options: DeliveryOptions) -> list[InstanceRef]:
    """Send result files to the PACS by the configured method; raises NetworkError."""
    if options.method == "cstore":
        return store_files(options.peer, paths)
    refs = [read_instance_ref(p) for p in paths]
    with OrthancClient(options.orthanc) as client:
        if options.method == "rest":
            for ref in refs:
                client.upload(ref.path.read_bytes())
        elif options.method == "stowrs":
            for i in range(0, len(refs), options.stow_batch):
                client.stow(r.path.read_bytes() for r in refs[i : i + options.stow_batch])
        else:
            raise NetworkError(f"unknown delivery method {options.method!r}")
    return refs


def missing_instances(refs: list[InstanceRef], options: DeliveryOptions) -> set[str]:
    """SOP Instance UIDs of ``refs`` the PACS does not confirm (empty set = all confirmed)."""
    expected = {r.sop_instance_uid for r in refs}
    if options.confirm == "cfind":
        return expected - find_instances(options.peer, refs)
    series = {(r.study_instance_uid, r.series_instance_uid) for r in refs}
    counts: Counter[str] = Counter()
    with OrthancClient(options.orthanc) as client:
        for study_uid, series_uid in sorted(series):
            counts.update(client.find_sop_uids(study_uid, series_uid))
    duplicated = [uid for uid in expected if counts[uid] > 1]
    if duplicated:
        raise NetworkError(f"{len(duplicated)} result instance(s) stored more than once")
    return expected - set(counts)


def deliver(paths: list[Path], options: DeliveryOptions) -> int:
    """Send and confirm; returns the number of confirmed instances or raises NetworkError."""
    refs = send(paths, options)
    missing = missing_instances(refs, options)
    if missing:
        raise NetworkError(f"{len(missing)} of {len(refs)} instance(s) not confirmed by the PACS")
    return len(refs)


def remove_superseded(sop_uids: set[str], options: DeliveryOptions) -> int:
    """Delete from Orthanc the result instances a re-analysis superseded; returns how many
    it held. Raises NetworkError (the delivery is retried)."""
    if not sop_uids:
        return 0
    with OrthancClient(options.orthanc) as client:
        return sum(client.delete_instance(uid) for uid in sorted(sop_uids))


class Deliverer:
    """Delivers jobs in ``results_ready``, retrying with exponential backoff."""

    def __init__(
        self,
        store: JobStore,
        options: DeliveryOptions,
        on_delivered: Callable[[Job], None] = lambda job: None,
    ) -> None:
        self.store = store
        self.options = options
        self.on_delivered = on_delivered
        self.wake = threading.Event()
        self.health = LoopHealth("delivery")

    def run_once(self) -> bool:
        job = self.store.next_deliverable()
        if job is None:
            return False
        self.deliver_job(job)
        return True

    def deliver_job(self, job: Job) -> bool:
        """One delivery attempt of a job in results_ready; True once delivered (a failure
        is recorded and scheduled again, see ``Backoff``)."""
        started = time.perf_counter()
        paths = [Path(p) for p in job.outputs]
        try:
            current = {read_instance_ref(p).sop_instance_uid for p in paths}
            self.store.add_published(job, sorted(current))  # may be in the PACS from now on
            count = deliver(paths, self.options)
            removed = remove_superseded(set(job.published) - current, self.options)
        except BrainxaiError as exc:
            self._failed(job, exc)
            return False
        seconds = time.perf_counter() - started
        metrics.observe_stage("delivery", seconds)
        if self.store.mark_delivered(job, seconds, published=sorted(current)):
            log.info(
                "job %s: %d instance(s) delivered and confirmed in %.2f s", job.id, count, seconds
            )
            if removed:
                log.info("job %s: %d superseded result instance(s) removed from the PACS",
                         job.id, removed)  # fmt: skip
            self.on_delivered(job)
            return True
        return False

    def _failed(self, job: Job, exc: BrainxaiError) -> None:
        after = self.store.delivery_failed(job, str(exc), self.options.backoff)
        if after is not None and after.next_attempt_at is not None:
            metrics.inc_retry()
            log.warning(
                "job %s: delivery attempt %d failed (%s); retry in %.1f s",
                job.id,
                after.attempts,
                one_line(str(exc)),
                after.next_attempt_at - time.time(),
            )
        elif after is not None:
            log.error("job %s: delivery abandoned: %s", job.id, after.error)

    def run(self, stop: threading.Event) -> None:
        log.info("delivery by %s, confirmed by %s", self.options.method, self.options.confirm)
        wait = partial(store_wait_time, self.store, self.options.poll_seconds)
        spec = LoopSpec(self.run_once, wait, self.wake, self.health,
                        self.options.loop_backoff_max)  # fmt: skip
        run_loop(spec, stop)
