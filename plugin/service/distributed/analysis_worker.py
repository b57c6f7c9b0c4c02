"""A distributed analysis worker (``brainxai worker``): one study job message at a time.

For each message (plugin.service.distributed.queue) the worker

1. claims the job in the shared job store (JobStore.claim): a stale message (another
   generation, or the job already finished) is acknowledged and dropped; a job whose
   processing never finished after ``max_processing_attempts`` claims goes to
   ``dead_letter`` with the reason, and its message is acknowledged (it blocks nobody);
2. fetches the study's instances back from Orthanc's REST API into a private scratch folder
   (every instance the node received plus those earlier analyses used: a study is the union
   of its series, plugin.service.assembly.complete_study);
3. analyses them with the same processor and durable result steps as the embedded worker
   (plugin.service.worker.Worker), then delivers and confirms the results itself
   (plugin.service.delivery.Deliverer: deterministic UIDs, superseded objects removed);
4. removes the scratch folder (no patient data stays on a worker host) and acknowledges.

A failure around the processor (Orthanc unreachable, disk full) hands the job back
(``received``, ready a little later) for the DICOM node to publish again; a failed delivery
is retried by Celery after the job's backoff, on any worker. A worker killed at any step
never acknowledges, so RabbitMQ redelivers the message to another worker.

Why fetch from Orthanc rather than share storage: Orthanc already holds every routed
instance (it is where they came from), so workers need no new storage service, no shared
file system and no second copy of patient data; the cost is one HTTP download per instance
per analysis, small next to the analysis (see the README's benchmark).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin.job import Job, JobState
from plugin.job_store import JobStore, private_dir
from plugin.service.assembly import orthanc_fetcher
from plugin.service.delivery import Deliverer
from plugin.service.distributed import queue
from plugin.service.distributed.pg_store import open_store
from plugin.service.distributed.worker_metrics import WORKER_METRICS, WorkerHealth, serve_health
from plugin.service.loops import describe_error
from plugin.service.wiring import (
    delivery_options,
    load_processor,
    warm_up_model,
    worker_context,
)
from plugin.service.worker import Processor, Worker, WorkerOptions
from plugin.settings import Settings
from vocabulary.errors import BrainxaiError

log = logging.getLogger(__name__)

#: Concurrent instance downloads from Orthanc: scratch copies, not fsynced (the folder is
#: emptied after each job; Orthanc keeps the originals).
FETCH_PARALLEL = 4


def worker_name(settings: Settings) -> str:
    return settings.worker_name or socket.gethostname()


def _union(*maps: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for m in maps:
        for series, sops in m.items():
            out.setdefault(series, set()).update(sops)
    return {series: sorted(sops) for series, sops in sorted(out.items())}


@dataclass(frozen=True)
class Outcome:
    """What became of one message: ``retry_in`` seconds when delivery is to be retried."""

    state: str
    retry_in: float | None = None


class StudyRunner:
    """Runs one study job message to an end state (see the module docstring)."""

    def __init__(
        self, settings: Settings, store: JobStore, processor: Processor, health: WorkerHealth
    ) -> None:
        scratch = settings.data_dir / "worker" / health.name
        self.settings = settings
        self.store = store
        self.health = health
        self.options = WorkerOptions(
            incoming_dir=scratch / "incoming",
            results_dir=scratch / "results",
            max_processing_attempts=settings.max_processing_attempts,
            backoff_max_seconds=settings.loop_backoff_max_seconds,
        )
        delivery = delivery_options(settings)
        self.worker = Worker(
            store,
            processor,
            self.options,
            fetch=orthanc_fetcher(delivery.orthanc, durable=False, parallel=FETCH_PARALLEL),
        )
        self.deliverer = Deliverer(store, delivery)

    def run(self, message: dict[str, Any]) -> Outcome:
        job_id, generation = str(message["job_id"]), int(message["generation"])
        claimed = self.store.claim(job_id, generation, self.settings.max_processing_attempts)
        if claimed is None:
            return self._unclaimed(job_id, generation)
        wait = time.time() - float(message.get("published_at") or time.time())
        WORKER_METRICS.stage.labels("queue_wait").observe(max(0.0, wait))
        job = dataclasses.replace(
            claimed, source_series=_union(claimed.source_series, message.get("series") or {})
        )
        log.info("job %s: claimed by %s (attempt %d, generation %d)", job.id, self.health.name,
                 job.processing_attempts, job.generation)  # fmt: skip
        self.health.in_flight += 1
        WORKER_METRICS.in_flight.inc()
        try:
            return self._run_claimed(job)
        finally:
            self.health.in_flight -= 1
            self.health.handled += 1
            WORKER_METRICS.in_flight.dec()
            self._clean(job)

    def _unclaimed(self, job_id: str, generation: int) -> Outcome:
        job = self.store.get(job_id)
        state = job.state if job is not None else "gone"
        if job is not None and job.state == JobState.DEAD_LETTER and job.generation == generation:
            WORKER_METRICS.failures.labels("dead_letter").inc()
            log.error("job %s: dead letter: %s", job_id, job.error)
        else:
            log.info("job %s: message for generation %d dropped (job is %s, generation %s)",
                     job_id, generation, state, job.generation if job else "-")  # fmt: skip
        WORKER_METRICS.jobs.labels("dropped" if state != JobState.DEAD_LETTER else state).inc()
        return Outcome(str(state))

    def _run_claimed(self, job: Job) -> Outcome:
        started = time.perf_counter()
        try:
            self.worker.process_claimed(job)
        except (BrainxaiError, OSError, sqlite3.Error) as exc:
            return self._hand_back(job, exc)
        WORKER_METRICS.stage.labels("analysis").observe(time.perf_counter() - started)
        current = self.store.get(job.id)
        if current is None or current.generation != job.generation:
            return Outcome("superseded")
        if current.state == JobState.RESULTS_READY:
            if not self.deliverer.deliver_job(current):
                after = self.store.get(job.id)
                if after is not None and after.state == JobState.RESULTS_READY:
                    retry_at = after.next_attempt_at or time.time()
                    return Outcome(after.state, retry_in=max(0.0, retry_at - time.time()))
            current = self.store.get(job.id) or current
        if current.state == JobState.FAILED:
            WORKER_METRICS.failures.labels("failed").inc()
        WORKER_METRICS.jobs.labels(safe_state(current.state)).inc()
        self.health.succeeded()
        return Outcome(current.state)

    def _hand_back(self, job: Job, exc: BaseException) -> Outcome:
        """A step around the processor failed: back to ``received`` for the node to publish
        again after a short delay (the attempt counts towards the dead-letter limit)."""
        why = describe_error(exc) if not isinstance(exc, BrainxaiError) else str(exc)
        self.health.failed(why)
        WORKER_METRICS.failures.labels("handed_back").inc()
        retry_at = time.time() + min(5.0, self.settings.loop_backoff_max_seconds)
        log.warning("job %s: handed back for a later attempt: %s", job.id, why)
        self.store.requeue(job, retry_at, why)
        return Outcome(JobState.RECEIVED)

    def _clean(self, job: Job) -> None:
        """No patient data stays on a worker: scratch inputs and results go after each job."""
        shutil.rmtree(self.options.incoming_dir / job.study_instance_uid, ignore_errors=True)
        for folder in (job.id, f"{job.id}.partial"):
            shutil.rmtree(self.options.results_dir / folder, ignore_errors=True)


def safe_state(state: str) -> str:
    return state if state in {s.value for s in JobState} else "other"


def prepare_scratch(runner: StudyRunner) -> None:
    """Create the scratch folders 0700 and empty them (left over by a killed worker)."""
    for folder in (runner.options.incoming_dir, runner.options.results_dir):
        shutil.rmtree(folder, ignore_errors=True)
        private_dir(Path(folder))


def run_worker(settings: Settings) -> int:
    """``brainxai worker``: consume study jobs until SIGTERM (warm shutdown: the current
    study finishes first) or SIGINT; serves /healthz and /metrics meanwhile."""
    settings = settings.model_copy(update={"mode": "distributed"})
    store = open_store(settings)
    context = worker_context(settings, store)
    processor = load_processor(settings.processor, context)
    app = queue.make_app(settings)
    health = WorkerHealth(worker_name(settings), settings.loop_unready_seconds)
    runner = StudyRunner(settings, store, processor, health)
    prepare_scratch(runner)

    def analyse_study(task: Any, message: dict[str, Any]) -> str:
        try:
            outcome = runner.run(message)
        except sqlite3.Error as exc:  # the job store is unreachable: the message comes back
            health.failed(describe_error(exc))
            log.warning("job store unavailable (%s); message retried", describe_error(exc))
            raise task.retry(countdown=min(5.0, settings.loop_backoff_max_seconds)) from exc
        if outcome.retry_in is not None:
            raise task.retry(countdown=outcome.retry_in)
        return outcome.state

    app.task(name=queue.TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True,
             max_retries=None)(analyse_study)  # fmt: skip

    def scrape() -> None:
        WORKER_METRICS.queue_depth.set(queue.queue_depth(app, settings.queue))

    server = serve_health(settings.worker_metrics_host, settings.worker_metrics_port, health,
                          scrape)  # fmt: skip
    log.info("worker %s: queue %s, health and metrics on %s:%d", health.name, settings.queue,
             settings.worker_metrics_host, settings.worker_metrics_port)  # fmt: skip
    worker = app.Worker(
        hostname=f"{health.name}@brainxai",
        pool="solo",
        concurrency=1,
        queues=[settings.queue],
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        optimization="fair",
        loglevel="INFO",
        redirect_stdouts=False,
    )
    try:
        warm_up_model(context, settings.methods)  # the solo pool analyses in this thread
        worker.start()
    finally:
        server.shutdown()
        store.close()
    return int(getattr(worker, "exitcode", 0) or 0)
