"""A small process-wide Prometheus registry (text exposition format 0.0.4).

Other modules call the helpers where the event happens: ``inc_received()`` when an instance
is durably stored (plugin.assembly), ``inc_retry()`` when a failed delivery is scheduled again
(plugin.delivery), ``inc_loop_error("worker")`` when a service loop step fails (plugin.worker),
``observe_stage("processing", 4.2)`` per stage. Job counts by state are read from a
callback at scrape time (``set_jobs_source``). Label values are restricted to short
identifiers: stage names, loop names, job states, route templates and status codes, never
anything that could identify a patient.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from inference.errors import BrainxaiError

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

STAGE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip

_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_./{}:-]")

JobsSource = Callable[[], Mapping[str, int]]


def safe_label(value: str) -> str:
    """Restrict a label value to identifier-like characters (64 at most)."""
    return _LABEL_VALUE.sub("_", str(value))[:64] or "_"


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.n += 1


class Registry:
    """Counters and histograms keyed by label tuples; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received = 0
        self._retries = 0
        self._loop_errors: dict[str, int] = {}
        self._stages: dict[str, _Histogram] = {}
        self._http: dict[tuple[str, str, str], int] = {}
        self._jobs_source: JobsSource | None = None
        self._model: tuple[str, str] | None = None

    def observe_stage(self, stage: str, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return
        key = safe_label(stage)
        with self._lock:
            self._stages.setdefault(key, _Histogram(STAGE_BUCKETS)).observe(seconds)

    def inc_received(self, n: int = 1) -> None:
        with self._lock:
            self._received += n

    def inc_retry(self, n: int = 1) -> None:
        with self._lock:
            self._retries += n

    def inc_loop_error(self, loop: str) -> None:
        key = safe_label(loop)
        with self._lock:
            self._loop_errors[key] = self._loop_errors.get(key, 0) + 1

    def inc_http(self, route: str, method: str, status: int) -> None:
        key = (safe_label(route), safe_label(method), str(int(status)))
        with self._lock:
            self._http[key] = self._http.get(key, 0) + 1

    def set_jobs_source(self, source: JobsSource | None) -> None:
        with self._lock:
            self._jobs_source = source

    def set_model(self, name: str, version: str) -> None:
        with self._lock:
            self._model = (safe_label(name), safe_label(version))

    def render(self) -> str:
        """The whole registry in Prometheus text format."""
        with self._lock:
            source = self._jobs_source
            lines = self._render_locked()
        lines.extend(_render_jobs(source))
        return "\n".join(lines) + "\n"

    def _render_locked(self) -> list[str]:
        out = [
            "# HELP brainxai_received_instances_total DICOM instances received.",
            "# TYPE brainxai_received_instances_total counter",
            f"brainxai_received_instances_total {self._received}",
            "# HELP brainxai_delivery_retries_total Result deliveries retried.",
            "# TYPE brainxai_delivery_retries_total counter",
            f"brainxai_delivery_retries_total {self._retries}",
            "# HELP brainxai_loop_errors_total Failed steps of the service loops (retried).",
            "# TYPE brainxai_loop_errors_total counter",
            *(
                f'brainxai_loop_errors_total{{loop="{loop}"}} {n}'
                for loop, n in sorted(self._loop_errors.items())
            ),
            "# HELP brainxai_stage_seconds Time spent per pipeline stage.",
            "# TYPE brainxai_stage_seconds histogram",
        ]
        for stage, h in sorted(self._stages.items()):
            for bound, count in zip(h.buckets, h.counts, strict=True):
                out.append(
                    f'brainxai_stage_seconds_bucket{{stage="{stage}",le="{bound:g}"}} {count}'
                )
            out.append(f'brainxai_stage_seconds_bucket{{stage="{stage}",le="+Inf"}} {h.n}')
            out.append(f'brainxai_stage_seconds_sum{{stage="{stage}"}} {h.total:.6f}')
            out.append(f'brainxai_stage_seconds_count{{stage="{stage}"}} {h.n}')
        out += [
            "# HELP brainxai_http_requests_total HTTP requests by route template and status.",
            "# TYPE brainxai_http_requests_total counter",
        ]
        for (route, method, status), n in sorted(self._http.items()):
            out.append(
                f'brainxai_http_requests_total{{route="{route}",method="{method}",'
                f'status="{status}"}} {n}'
            )
        if self._model is not None:
            name, version = self._model
            out += [
                "# HELP brainxai_model_info The model in use.",
                "# TYPE brainxai_model_info gauge",
                f'brainxai_model_info{{name="{name}",version="{version}"}} 1',
            ]
        return out


def _render_jobs(source: JobsSource | None) -> list[str]:
    out = [
        "# HELP brainxai_jobs Jobs in the job store by state.",
        "# TYPE brainxai_jobs gauge",
    ]
    if source is None:
        return out
    try:
        counts = source()
    except (BrainxaiError, OSError, sqlite3.Error) as exc:
        log.warning("cannot count jobs for /metrics: %s", exc)
        return out + ["brainxai_jobs_scrape_error 1"]
    for state, n in sorted(counts.items()):
        out.append(f'brainxai_jobs{{state="{safe_label(state)}"}} {int(n)}')
    return out


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


def inc_http(route: str, method: str, status: int) -> None:
    REGISTRY.inc_http(route, method, status)


def set_jobs_source(source: JobsSource | None) -> None:
    """Register the callback giving {state: count} at scrape time."""
    REGISTRY.set_jobs_source(source)


def set_model(name: str, version: str) -> None:
    REGISTRY.set_model(name, version)


def render() -> str:
    return REGISTRY.render()
