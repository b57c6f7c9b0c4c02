"""Prometheus metrics and health of a distributed worker (and the node's publishing).

Metric definitions live here, in their own registry (prometheus_client); a worker's
``/metrics`` serves them after the project's process-wide metrics (plugin.metrics: stage
seconds for processing and delivery, loop errors), so the two merge in one scrape. Labels
are short identifiers only (stage, outcome), never UIDs or patient data.

``/healthz`` answers 200 while the worker's last job-store and broker steps succeed (or
failed for less than ``unready_after`` seconds), 503 otherwise, with a JSON body.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from plugin import metrics

log = logging.getLogger(__name__)


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.in_flight = Gauge("brainxai_worker_in_flight_jobs",
                               "Study jobs this worker is processing now", registry=r)  # fmt: skip
        self.queue_depth = Gauge("brainxai_queue_depth",
                                 "Study jobs waiting in the broker queue", registry=r)  # fmt: skip
        self.stage = Histogram(
            "brainxai_worker_stage_seconds", "Seconds per stage of a distributed study job",
            ["stage"], registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
        )  # fmt: skip
        self.jobs = Counter("brainxai_worker_jobs_total",
                            "Study job messages handled, by outcome", ["outcome"],
                            registry=r)  # fmt: skip
        self.failures = Counter("brainxai_worker_failures_total",
                                "Study jobs that failed, were dead-lettered or handed back",
                                ["kind"], registry=r)  # fmt: skip
        self.published = Counter("brainxai_queue_published_total",
                                 "Study job messages published by the DICOM node",
                                 registry=r)  # fmt: skip

    def render(self) -> bytes:
        return metrics.render().encode() + generate_latest(self.registry)


#: The process's worker metrics (one worker per process).
WORKER_METRICS = WorkerMetrics()


class WorkerHealth:
    """Whether the worker makes progress; thread-safe."""

    def __init__(self, name: str, unready_after: float) -> None:
        self.name = name
        self.unready_after = unready_after
        self._lock = threading.Lock()
        self.failing_since: float | None = None
        self.last_error = ""
        self.in_flight = 0  # jobs being processed now (mirrors brainxai_worker_in_flight_jobs)
        self.handled = 0

    def succeeded(self) -> None:
        with self._lock:
            self.failing_since = None

    def failed(self, what: str) -> None:
        with self._lock:
            if self.failing_since is None:
                self.failing_since = time.time()
            self.last_error = what

    def status(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            since, error = self.failing_since, self.last_error
        ok = since is None or time.time() - since < self.unready_after
        body: dict[str, Any] = {"worker": self.name, "ok": ok, "in_flight": self.in_flight,
                                "handled": self.handled}  # fmt: skip
        if since is not None:
            body["failing_for_s"] = round(time.time() - since, 1)
            body["last_error"] = error
        return ok, body


def serve_health(
    host: str, port: int, health: WorkerHealth, before_scrape: Callable[[], None]
) -> ThreadingHTTPServer:
    """Start ``/healthz`` and ``/metrics`` on (host, port) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/healthz":
                ok, body = health.status()
                self._answer(200 if ok else 503, json.dumps(body).encode(), "application/json")
            elif self.path == "/metrics":
                before_scrape()
                self._answer(200, WORKER_METRICS.render(), metrics.CONTENT_TYPE)
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("health: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="brainxai-worker-http",
                              daemon=True)  # fmt: skip
    thread.start()
    return server
