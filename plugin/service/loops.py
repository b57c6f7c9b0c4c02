"""The service's loops (worker, delivery, housekeeping): poll, work, never die.

Each loop runs under ``run_loop``: a failing step (the job store locked by another process,
a full disk, a bug) is logged by its error type, counted, and retried with exponential
backoff; the loop never dies of it. Each loop keeps a ``LoopHealth`` that ``/readyz``
reads. ``store_wait_time`` is how long a loop that polls the job store sleeps when idle.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from plugin import metrics
from plugin.job import one_line
from plugin.job_store import JobStore

log = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> str:
    """An error for the log without patient data: its type, plus SQLite's or the OS's own
    message (never the exception text, which may name files or carry DICOM values)."""
    name = type(exc).__name__
    if isinstance(exc, sqlite3.Error):
        return f"{name}: {one_line(str(exc), 120)}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{name}: {exc.strerror}"
    return name


class LoopHealth:
    """Whether a service loop is making progress; read by ``/readyz`` (thread-safe)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.failing_since: float | None = None
        self.failures = 0
        self.last_error = ""

    def succeeded(self) -> None:
        with self._lock:
            self.failing_since = None
            self.failures = 0

    def failed(self, exc: BaseException) -> None:
        metrics.inc_loop_error(self.name)
        with self._lock:
            if self.failing_since is None:
                self.failing_since = time.time()
            self.failures += 1
            self.last_error = describe_error(exc)

    def check(
        self, alive: bool, unready_after: float, now: float | None = None
    ) -> tuple[bool, str]:
        """(ok, detail): not ok if the thread is gone or has failed for ``unready_after`` s."""
        if not alive:
            return False, f"{self.name} stopped"
        now = time.time() if now is None else now
        with self._lock:
            since, failures, error = self.failing_since, self.failures, self.last_error
        if since is None:
            return True, f"{self.name} running"
        detail = f"{self.name} failing for {now - since:.0f} s ({failures} error(s), last {error})"
        return now - since < unready_after, detail


@dataclass(frozen=True)
class LoopSpec:
    """One service loop: ``step`` does one unit of work (True: there may be more now);
    ``wait_time`` says how long to sleep when idle; ``wake`` cuts the sleep short."""

    step: Callable[[], bool]
    wait_time: Callable[[], float]
    wake: threading.Event
    health: LoopHealth
    backoff_max: float = 30.0


def run_loop(spec: LoopSpec, stop: threading.Event) -> None:
    """Run ``spec`` until ``stop``; a failing step is logged, counted and retried with
    exponential backoff (0.5 s doubling up to ``backoff_max``), so the loop never dies."""
    name = spec.health.name
    log.info("%s started", name)
    delay = 0.0
    while not stop.is_set():
        spec.wake.clear()  # before the step: a wake-up during the step is not lost
        try:
            busy = spec.step()
            timeout = 0.0 if busy else spec.wait_time()
        except Exception as exc:  # noqa: BLE001 (logged with its type, traceback at debug)
            delay = min(spec.backoff_max, max(0.5, delay * 2))
            spec.health.failed(exc)
            log.warning("%s: %s; retrying in %.1f s", name, describe_error(exc), delay)
            log.debug("%s: step failed", name, exc_info=True)
            stop.wait(delay)
            continue
        if delay:
            log.info("%s: recovered", name)
        delay = 0.0
        spec.health.succeeded()
        if timeout > 0 and not stop.is_set():
            spec.wake.wait(timeout)
    log.info("%s stopped", name)


def store_wait_time(store: JobStore, poll: float) -> float:
    """Idle sleep of a loop polling ``store``: ``poll`` s, less if a job is due sooner."""
    nxt = store.next_wakeup()
    if nxt is None:
        return poll
    return max(0.01, min(poll, nxt - time.time()))
