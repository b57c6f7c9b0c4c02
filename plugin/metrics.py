"""The service's Prometheus metrics (prometheus_client, text exposition format 0.0.4).

Other modules call the helpers where the event happens: ``inc_received()`` when an instance
is durably stored (plugin.service.assembly), ``inc_retry()`` when a failed delivery is
scheduled again (plugin.service.delivery), ``inc_loop_error("worker")`` when a service loop
step fails (plugin.service.worker), ``observe_stage("processing", 4.2)`` per stage. Job counts
by state and the model in use are read from callbacks at scrape time (``set_jobs_source``,
``set_model_source``).

Each ``Registry`` owns its own ``CollectorRegistry`` (never prometheus_client's global one),
so tests and several app instances in one process do not collide; ``REGISTRY`` is the
process's default, which the helpers below and ``create_app`` use unless given another.
Label values are restricted to short identifiers: stage names, loop names, job states, route
templates and status codes, never anything that could identify a patient.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vocabulary.errors import BrainxaiError

log = logging.getLogger(__name__)

# What generate_latest writes (prometheus_client's CONTENT_TYPE_LATEST names a newer format).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

STAGE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip

_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_./{}:-]")

JobsSource = Callable[[], Mapping[str, int]]
ModelSource = Callable[[], tuple[str, str] | None]  # (name, version) or None when unloaded

# Counters expose only ``*_total`` (no ``*_created`` series), as before prometheus_client.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream


def safe_label(value: str) -> str:
    """Restrict a label value to identifier-like characters (64 at most)."""
    return _LABEL_VALUE.sub("_", str(value))[:64] or "_"


class _ScrapeTime(Collector):
    """``brainxai_jobs{state}`` and ``brainxai_model_info{name,version}`` from callbacks."""

    def __init__(self) -> None:
        self.jobs: JobsSource | None = None
        self.model: ModelSource | None = None

    def collect(self) -> Iterator[Metric]:
        yield from _jobs_families(self.jobs)
        model = self.model() if self.model is not None else None
        if model is not None:
            info = GaugeMetricFamily(
                "brainxai_model_info", "The model in use.", labels=["name", "version"]
            )
            info.add_metric([safe_label(model[0]), safe_label(model[1])], 1)
            yield info


def _jobs_families(source: JobsSource | None) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("brainxai_jobs", "Jobs in the job store by state.", labels=["state"])
    if source is None:
        yield jobs
        return
    try:
        counts = source()
    except (BrainxaiError, OSError, sqlite3.Error) as exc:
        log.warning("cannot count jobs for /metrics: %s", exc)
        yield jobs
        yield GaugeMetricFamily(
            "brainxai_jobs_scrape_error", "The job store could not be counted.", value=1
        )
        return
    for state, n in sorted(counts.items()):
        jobs.add_metric([safe_label(state)], int(n))
    yield jobs


class Registry:
    """The brainxai metrics in one private CollectorRegistry; thread-safe."""

    def __init__(self) -> None:
        self.collectors = CollectorRegistry()
        reg = self.collectors
        self._received = Counter(
            "brainxai_received_instances", "DICOM instances received.", registry=reg
        )
        self._retries = Counter(
            "brainxai_delivery_retries", "Result deliveries retried.", registry=reg
        )
        self._loop_errors = Counter(
            "brainxai_loop_errors", "Failed steps of the service loops (retried).", ["loop"],
            registry=reg,
        )  # fmt: skip
        self._stages = Histogram(
            "brainxai_stage_seconds", "Time spent per pipeline stage.", ["stage"],
            buckets=STAGE_BUCKETS, registry=reg,
        )  # fmt: skip
        self._http = Counter(
            "brainxai_http_requests", "HTTP requests by route template and status.",
            ["route", "method", "status"], registry=reg,
        )  # fmt: skip
        self._scrape_time = _ScrapeTime()
        reg.register(self._scrape_time)

    def observe_stage(self, stage: str, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return
        self._stages.labels(stage=safe_label(stage)).observe(seconds)

    def inc_received(self, n: int = 1) -> None:
        self._received.inc(n)

    def inc_retry(self, n: int = 1) -> None:
        self._retries.inc(n)

    def inc_loop_error(self, loop: str) -> None:
        self._loop_errors.labels(loop=safe_label(loop)).inc()

    def inc_http(self, route: str, method: str, status: int) -> None:
        self._http.labels(safe_label(route), safe_label(method), str(int(status))).inc()

    def set_jobs_source(self, source: JobsSource | None) -> None:
        self._scrape_time.jobs = source

    def set_model_source(self, source: ModelSource | None) -> None:
        self._scrape_time.model = source

    def render(self) -> str:
        """The whole registry in Prometheus text format 0.0.4."""
        return generate_latest(self.collectors).decode("utf-8")


REGISTRY = Registry()


def observe_stage(stage: str, seconds: float) -> None:
    """Record how long a pipeline stage (receive, select, inference, explain, ...) took."""
    REGISTRY.observe_stage(stage, seconds)


def inc_received(n: int = 1) -> None:
    """Count DICOM instances received by the store SCP."""
    REGISTRY.inc_received(n)


def inc_retry(n: int = 1) -> None:
    """Count a delivery retry (C-STORE / STOW-RS / REST) of a result object."""
    REGISTRY.inc_retry(n)


def inc_loop_error(loop: str) -> None:
    """Count a failed step of a service loop (worker, delivery, housekeeping)."""
    REGISTRY.inc_loop_error(loop)


def render() -> str:
    return REGISTRY.render()
