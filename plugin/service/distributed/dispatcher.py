"""The DICOM node's side of distributed mode: publish each ready study job on the broker.

Takes the place of the local analysis worker in plugin.service.wiring.Service: the same loop
(plugin.service.loops.run_loop: a failing step, such as the broker being down, is retried with
backoff and reported to /readyz), but instead of analysing a ready job it publishes its
message (plugin.service.distributed.queue) and moves it ``received -> queued``. The order makes a
crash safe: published first (confirmed by the broker), marked second; a crash in between
publishes it again at the next start, and the duplicate is harmless (JobStore.claim and
deterministic result UIDs). While the broker is down jobs stay ``received`` in the job
store: none is lost, they are published once it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plugin.job import Job
from plugin.job_store import JobStore
from plugin.service.assembly import received_series
from plugin.service.distributed import queue
from plugin.service.distributed.worker_metrics import WORKER_METRICS
from plugin.service.loops import LoopHealth, LoopSpec, run_loop

log = logging.getLogger(__name__)


def job_message(job: Job, incoming_dir: Path) -> dict[str, Any]:
    """The queue message of a ready job: its UIDs and the instances the node received
    (per series), which workers fetch back from Orthanc."""
    folder = incoming_dir / job.study_instance_uid
    return {
        "job_id": job.id,
        "generation": job.generation,
        "study_uid": job.study_instance_uid,
        "series": received_series(folder, job.source_series),
        "published_at": time.time(),
    }


class Dispatcher:
    """Publishes ready jobs; ``run(stop)``, ``wake`` and ``health`` as
    plugin.service.worker.Worker."""

    def __init__(
        self,
        store: JobStore,
        app: Any,
        incoming_dir: Path,
        before_poll: Callable[[], object] = lambda: None,
        poll_seconds: float = 1.0,
        backoff_max_seconds: float = 30.0,
    ) -> None:
        self.store = store
        self.app = app
        self.incoming_dir = incoming_dir
        self.before_poll = before_poll
        self.poll_seconds = poll_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.wake = threading.Event()
        self.health = LoopHealth("dispatcher")

    def run_once(self) -> bool:
        """Publish the next ready job, if any. Returns whether one was published."""
        self.before_poll()
        job = self.store.next_ready()
        if job is None:
            return False
        message = job_message(job, self.incoming_dir)
        queue.publish(self.app, message)
        WORKER_METRICS.published.inc()
        if self.store.mark_queued(job):
            count = sum(len(s) for s in message["series"].values())
            log.info("job %s: study %s queued (%d instance(s), generation %d)", job.id,
                     job.study_instance_uid, count, job.generation)  # fmt: skip
        return True

    def _wait_time(self) -> float:
        # A due time in the past belongs to a delivery a worker is doing (results_ready):
        # a ready job would have been published by run_once.
        nxt = self.store.next_wakeup()
        now = time.time()
        if nxt is None or nxt <= now:
            return self.poll_seconds
        return max(0.01, min(self.poll_seconds, nxt - now))

    def run(self, stop: threading.Event) -> None:
        spec = LoopSpec(self.run_once, self._wait_time, self.wake, self.health,
                        self.backoff_max_seconds)  # fmt: skip
        run_loop(spec, stop)


def node_dispatcher(
    settings: Any, store: JobStore, incoming_dir: Path, before_poll: Callable[[], object]
) -> Dispatcher:
    """The dispatcher of the DICOM node in distributed mode (broker from the settings)."""
    return Dispatcher(store, queue.make_app(settings), incoming_dir, before_poll,
                      backoff_max_seconds=settings.loop_backoff_max_seconds)  # fmt: skip
