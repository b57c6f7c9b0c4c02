"""A study job's record: its states, the snapshot ``Job``, delivery backoff, and the one-line
error text the store may hold (no file paths, no tracebacks: paths could name patients).

The store that persists these is ``plugin.job_store`` (SQLite) or its PostgreSQL twin in
``plugin.service.distributed.pg_store``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"  # distributed mode: published on the broker
    PROCESSING = "processing"
    RESULTS_READY = "results_ready"
    DELIVERED = "delivered"
    NO_RESULT = "no_result"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"  # distributed mode: never finished after N attempts


#: States a job leaves only when new instances of its study arrive (or a retry).
FINAL_STATES = (JobState.DELIVERED, JobState.NO_RESULT, JobState.FAILED, JobState.DEAD_LETTER)
#: States ``retry`` moves back to received.
RETRYABLE_STATES = (JobState.FAILED, JobState.DEAD_LETTER)


@dataclass(frozen=True)
class Job:
    """A snapshot of one job (``timings`` in seconds, ``*_at`` as Unix times)."""

    id: str
    study_instance_uid: str
    state: str
    created_at: float
    updated_at: float
    attempts: int
    error: str | None
    timings: dict[str, float]
    summary: dict[str, Any]
    outputs: list[str]
    generation: int = 1
    processing_attempts: int = 0
    ready_at: float | None = None
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    inputs_removed: bool = False
    source_series: dict[str, list[str]] = field(default_factory=dict)  # series -> SOP UIDs
    published: list[str] = field(default_factory=list)  # result SOP UIDs maybe in the PACS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff for delivery retries."""

    base: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    max_attempts: int = 30

    def delay(self, attempt: int) -> float:
        """Delay after the ``attempt``-th failure (1-based)."""
        return float(min(self.max_delay, self.base * self.factor ** max(0, attempt - 1)))


ERROR_LIMIT = 500
_TOKEN = re.compile(r"[^\s'\"(),;\[\]]*/[^\s'\"(),;\[\]]*")


def _strip_path(match: re.Match[str]) -> str:
    token = match.group(0)
    if "://" in token or not (token[0] in "/~." or token.count("/") >= 2):
        return token  # a URL, or something like "3/24"
    return token.rstrip("/").rsplit("/", 1)[-1] or "<path>"


def one_line(text: str, limit: int = ERROR_LIMIT) -> str:
    """An error text fit for the job store: one line, file paths reduced to their last part,
    at most ``limit`` characters. A traceback keeps only its last line (the exception)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        lines = lines[-1:]
    flat = " ".join(lines)
    flat = _TOKEN.sub(_strip_path, flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
