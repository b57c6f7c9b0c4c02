"""The processing worker: runs the analysis of ready studies and records durable results.

Results are written to ``results/<job id>.partial``, made private (files 0600, folders
0700), fsynced, then renamed to ``results/<job id>`` before the job moves to
``results_ready``; a crash at any point leaves the job in ``processing``, which
``JobStore.recover`` re-runs. A study in which nothing could be analysed (every instance
refused by the reader, no series selected) produces no result files: its job ends
``no_result`` with the reasons, never ``delivered``.

A study is the union of its series (see plugin.service.assembly): before the analysis the worker
completes the study's folder with the instances its earlier analyses used (restored from
the PACS when the retention already removed them) and records what this analysis uses in
the job store, so the processor always sees every series received for the study so far.
If the PACS cannot be reached for that, the job is put back and retried like any other
failing step around the processor.

The worker's loop runs under plugin.service.loops.run_loop (a failing step is retried with
backoff; the loop never dies of it).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dicom_io.files import fsync_tree
from plugin import metrics
from plugin.job import Job, JobState, one_line
from plugin.job_store import JobStore, private_dir
from plugin.service.assembly import Fetcher, StudyAssembler, complete_study
from plugin.service.loops import LoopHealth, LoopSpec, describe_error, run_loop, store_wait_time
from vocabulary.errors import BrainxaiError, JobError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessResult:
    """What a processor produced: DICOM result files and a JSON-serialisable summary."""

    outputs: list[Path]
    summary: dict[str, Any] = field(default_factory=dict)


#: Analyse the instances of one study (paths) and write result files into the directory.
Processor = Callable[[list[Path], Path], ProcessResult]


@dataclass(frozen=True)
class WorkerOptions:
    incoming_dir: Path
    results_dir: Path
    max_processing_attempts: int = 3
    poll_seconds: float = 1.0
    backoff_max_seconds: float = 30.0


def study_inputs(incoming_dir: Path, study_uid: str) -> list[Path]:
    """The received instances of a study, in a stable order."""
    folder = incoming_dir / study_uid
    return sorted(folder.glob("*.dcm")) if folder.is_dir() else []


def make_private(folder: Path) -> None:
    """Result files 0600 and folders 0700: they carry patient data."""
    os.chmod(folder, 0o700)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, 0o700 if path.is_dir() else 0o600)


# ---- the worker ----------------------------------------------------------------------------
class Worker:
    """Processes one ready job at a time (the analysis itself uses the CPU cores).

    ``before_poll`` runs at every turn of the loop (the service retries study assembly's
    pending "ready" marks there). ``fetch`` restores earlier instances of a study from the
    PACS (None: a study is analysed with the instances still on disk).
    """

    def __init__(
        self,
        store: JobStore,
        processor: Processor,
        options: WorkerOptions,
        on_results: Callable[[], None] = lambda: None,
        before_poll: Callable[[], object] = lambda: None,
        fetch: Fetcher | None = None,
    ) -> None:
        self.store = store
        self.processor = processor
        self.options = options
        self.on_results = on_results
        self.before_poll = before_poll
        self.fetch = fetch
        self.wake = threading.Event()
        self.health = LoopHealth("worker")
        self._stop = threading.Event()

    def run_once(self) -> bool:
        """Process the next ready job, if any. Returns whether a job was taken."""
        self.before_poll()
        ready = self.store.next_ready()
        if ready is None:
            return False
        job = self.store.start_processing(ready, self.options.max_processing_attempts)
        if job is None:
            return True
        try:
            self._process(job)
        except Exception as exc:
            # Not the processor (its errors fail the job) but a step around it (disk full,
            # a rename, the PACS unreachable for earlier series): put the job back for a
            # later attempt rather than leave it stuck.
            retry_at = time.time() + min(5.0, self.options.backoff_max_seconds)
            why = one_line(str(exc)) if isinstance(exc, BrainxaiError) else describe_error(exc)
            self._persist("the requeue", lambda: self.store.requeue(job, retry_at, why))
            raise
        return True

    def process_claimed(self, job: Job) -> None:
        """Process a job already moved to ``processing`` by someone else (distributed mode:
        JobStore.claim). Errors around the processor propagate, as in ``run_once``."""
        self._process(job)

    def _assemble(self, job: Job) -> list[Path]:
        """The study's inputs: every series received so far (earlier instances restored
        from the PACS if the retention removed them), recorded in the job store."""
        series = complete_study(job, self.options.incoming_dir, self.fetch)
        self._persist("the series", lambda: self.store.record_series(job, series))
        return study_inputs(self.options.incoming_dir, job.study_instance_uid)

    def _process(self, job: Job) -> None:
        inputs = self._assemble(job)
        private_dir(self.options.results_dir)
        partial = self.options.results_dir / f"{job.id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        log.info("job %s: processing study %s (%d instance(s), generation %d)", job.id,
                 job.study_instance_uid, len(inputs), job.generation)  # fmt: skip
        started = time.perf_counter()
        try:
            if not inputs:
                raise JobError("no received instances on disk")
            result = self.processor(inputs, partial)
            relative = [_relative(p, partial) for p in result.outputs]
            make_private(partial)
            fsync_tree(partial)
        except BrainxaiError as exc:
            message = str(exc)
            log.warning("job %s failed: %s", job.id, one_line(message))
            log.debug("job %s: processor error", job.id, exc_info=True)
            self._persist("the failure", lambda: self.store.fail(job, message))
            return
        except Exception as exc:  # noqa: BLE001 (a processor bug must not stop the worker)
            log.error("job %s: unexpected %s in the processor", job.id, describe_error(exc))
            log.debug("job %s: processor traceback", job.id, exc_info=True)
            reason = f"internal error: {type(exc).__name__}"
            self._persist("the failure", lambda: self.store.fail(job, reason))
            return
        seconds = time.perf_counter() - started
        metrics.observe_stage("processing", seconds)
        if not relative:
            shutil.rmtree(partial, ignore_errors=True)
            self._no_result(job, result.summary, seconds)
            return
        self._publish(job, partial, relative, result.summary, seconds)

    def _publish(
        self, job: Job, partial: Path, relative: list[Path], summary: dict[str, Any], seconds: float
    ) -> None:
        final = self.options.results_dir / job.id
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        outputs = [str(final / rel) for rel in relative]
        summary = relocated(summary, str(partial), str(final))
        done = self._persist(
            "the results", lambda: self.store.finish_processing(job, outputs, summary, seconds)
        )
        if done:
            log.info("job %s: %d result file(s) in %.2f s", job.id, len(outputs), seconds)
            self.on_results()
        else:
            log.info("job %s was re-triggered by new instances; results superseded", job.id)

    def _no_result(self, job: Job, summary: dict[str, Any], seconds: float) -> None:
        reason = no_result_reason(summary)
        done = self._persist(
            "no result",
            lambda: self.store.finish_without_result(job, summary, reason, seconds),
        )
        if done:
            log.warning("job %s: no result for study %s: %s", job.id, job.study_instance_uid,
                        reason)  # fmt: skip
        else:
            log.info("job %s was re-triggered by new instances", job.id)

    def _persist(self, what: str, call: Callable[[], T]) -> T:
        """Record an outcome in the job store, retrying while it is locked or unavailable:
        the work is done and durable, so giving up would leave the job stuck in processing.
        Raises only when the service is stopping (the next start re-runs the job)."""
        delay = 0.2
        while True:
            try:
                return call()
            except sqlite3.Error as exc:
                self.health.failed(exc)
                if self._stop.is_set():
                    raise
                log.warning("worker: cannot record %s yet (%s); retrying in %.1f s", what,
                            describe_error(exc), delay)  # fmt: skip
                self._stop.wait(delay)
                delay = min(self.options.backoff_max_seconds, delay * 2)

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        run_loop(
            LoopSpec(
                self.run_once,
                lambda: store_wait_time(self.store, self.options.poll_seconds),
                self.wake,
                self.health,
                self.options.backoff_max_seconds,
            ),  # fmt: skip
            stop,
        )


def relocated(value: Any, old: str, new: str) -> Any:
    """``value`` (a JSON-ready summary) with every path under folder ``old`` moved to ``new``:
    the processor wrote into ``<job>.partial``, which is renamed once the results are whole."""
    if isinstance(value, str):
        if value == old or value.startswith(old + os.sep):
            return new + value[len(old) :]
        return value
    if isinstance(value, dict):
        return {k: relocated(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [relocated(v, old, new) for v in value]
    return value


def no_result_reason(summary: dict[str, Any]) -> str:
    """Why a study gave nothing to deliver, from the pipeline's summary: the distinct
    reasons (with counts) for refused files and unselected or failed series."""
    reasons: Counter[str] = Counter()
    for item in summary.get("rejected") or []:
        reasons[f"file refused: {item.get('reason') or 'no reason given'}"] += 1
    for study in summary.get("studies") or []:
        for series in study.get("series") or []:
            reasons[f"series not analysed: {series.get('reason') or 'no reason given'}"] += 1
    if not reasons:
        return "nothing analysable: the processor produced no result objects"
    parts = [f"{text} (x{n})" if n > 1 else text for text, n in reasons.most_common()]
    return one_line("nothing analysable: " + "; ".join(parts))


def _relative(path: Path, folder: Path) -> Path:
    try:
        return path.resolve().relative_to(folder.resolve())
    except ValueError as exc:
        raise JobError(f"processor output {path.name} is outside its output folder") from exc


def remove_delivered_inputs(
    store: JobStore, assembler: StudyAssembler, options: WorkerOptions, retention_hours: float
) -> int:
    """Remove the inputs and result files of jobs delivered (or ended ``no_result``) more
    than ``retention_hours`` ago.

    Runs under the assembler's lock and re-checks the job, so a study that is receiving new
    instances (and so is no longer finished) keeps its files.
    """
    removed = 0
    for job in store.due_for_cleanup(time.time() - retention_hours * 3600):
        with assembler.lock:
            current = store.get(job.id)
            if (
                current is None
                or current.state not in (JobState.DELIVERED, JobState.NO_RESULT)
                or current.generation != job.generation
                or assembler.is_receiving(job.study_instance_uid)
            ):
                continue
            shutil.rmtree(options.incoming_dir / job.study_instance_uid, ignore_errors=True)
            shutil.rmtree(options.results_dir / job.id, ignore_errors=True)
            if store.mark_inputs_removed(current):
                removed += 1
                log.info("job %s: inputs removed after it finished", job.id)
    return removed
