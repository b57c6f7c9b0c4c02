"""The processing worker: runs the analysis of ready studies and records durable results.

Results are written to ``results/<job id>.partial``, fsynced, then renamed to
``results/<job id>`` before the job moves to ``results_ready``; a crash at any point
leaves the job in ``processing``, which ``JobStore.recover`` re-runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.errors import BrainxaiError, JobError
from plugin.assembly import StudyAssembler
from plugin.job_store import Job, JobState, JobStore

log = logging.getLogger(__name__)


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


def study_inputs(incoming_dir: Path, study_uid: str) -> list[Path]:
    """The received instances of a study, in a stable order."""
    folder = incoming_dir / study_uid
    return sorted(folder.glob("*.dcm")) if folder.is_dir() else []


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Worker:
    """Processes one ready job at a time (the analysis itself uses the CPU cores)."""

    def __init__(
        self,
        store: JobStore,
        processor: Processor,
        options: WorkerOptions,
        on_results: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.processor = processor
        self.options = options
        self.on_results = on_results
        self.wake = threading.Event()

    def run_once(self) -> bool:
        """Process the next ready job, if any. Returns whether a job was taken."""
        ready = self.store.next_ready()
        if ready is None:
            return False
        job = self.store.start_processing(ready, self.options.max_processing_attempts)
        if job is None:
            return True
        self._process(job)
        return True

    def _process(self, job: Job) -> None:
        inputs = study_inputs(self.options.incoming_dir, job.study_instance_uid)
        final = self.options.results_dir / job.id
        partial = self.options.results_dir / f"{job.id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        log.info(
            "job %s: processing study %s (%d instance(s), generation %d)",
            job.id,
            job.study_instance_uid,
            len(inputs),
            job.generation,
        )
        started = time.perf_counter()
        try:
            if not inputs:
                raise JobError("no received instances on disk")
            result = self.processor(inputs, partial)
            _fsync_tree(partial)
            relative = [_relative(p, partial) for p in result.outputs]
        except BrainxaiError as exc:
            log.warning("job %s failed: %s", job.id, exc)
            self.store.fail(job, str(exc))
            return
        except Exception as exc:
            log.exception("job %s: unexpected error in the processor", job.id)
            self.store.fail(job, f"internal error: {type(exc).__name__}")
            return
        seconds = time.perf_counter() - started
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        outputs = [str(final / rel) for rel in relative]
        if self.store.finish_processing(job, outputs, result.summary, seconds):
            log.info("job %s: %d result file(s) in %.2f s", job.id, len(outputs), seconds)
            self.on_results()
        else:
            log.info("job %s was re-triggered by new instances; results superseded", job.id)

    def run(self, stop: threading.Event) -> None:
        log.info("worker started")
        while not stop.is_set():
            if self.run_once():
                continue
            self.wake.clear()
            self.wake.wait(_wait_time(self.store, self.options.poll_seconds))
        log.info("worker stopped")


def _relative(path: Path, folder: Path) -> Path:
    try:
        return path.resolve().relative_to(folder.resolve())
    except ValueError as exc:
        raise JobError(f"processor output {path.name} is outside its output folder") from exc


def _wait_time(store: JobStore, poll: float) -> float:
    nxt = store.next_wakeup()
    if nxt is None:
        return poll
    return max(0.01, min(poll, nxt - time.time()))


def remove_delivered_inputs(
    store: JobStore, assembler: StudyAssembler, options: WorkerOptions, retention_hours: float
) -> int:
    """Remove the inputs and result files of jobs delivered more than ``retention_hours`` ago.

    Runs under the assembler's lock and re-checks the job, so a study that is receiving new
    instances (and so is no longer ``delivered``) keeps its files.
    """
    removed = 0
    for job in store.due_for_cleanup(time.time() - retention_hours * 3600):
        with assembler.lock:
            current = store.get(job.id)
            if (
                current is None
                or current.state != JobState.DELIVERED
                or current.generation != job.generation
                or assembler.is_receiving(job.study_instance_uid)
            ):
                continue
            shutil.rmtree(options.incoming_dir / job.study_instance_uid, ignore_errors=True)
            shutil.rmtree(options.results_dir / job.id, ignore_errors=True)
            if store.mark_inputs_removed(current):
                removed += 1
                log.info("job %s: inputs removed after delivery", job.id)
    return removed
