"""The job store as the API sees it: a small protocol and the JSON view of a job."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from plugin import job_store
from plugin.api.schemas import JobView
from plugin.settings import Settings

log = logging.getLogger(__name__)

COUNT_LIMIT = 100_000


class JobStoreLike(Protocol):
    def list_jobs(self, limit: int) -> list[Any]: ...

    def get(self, job_id: str) -> Any | None: ...

    def retry(self, job_id: str) -> Any: ...


def open_job_store(settings: Settings) -> tuple[JobStoreLike | None, Path | None]:
    """The plugin's job store under settings.data_dir, or (None, None) if unavailable."""
    path = job_store.default_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return job_store.JobStore(path), path


def job_counts(store: JobStoreLike) -> Mapping[str, int]:
    """{state: count} for /metrics; uses the store's own counter when it has one."""
    counter = getattr(store, "count_by_state", None)
    if callable(counter):
        return {str(k): int(v) for k, v in counter().items()}
    return Counter(_state(j) for j in store.list_jobs(COUNT_LIMIT))


def _state(job: Any) -> str:
    state = job.state
    return str(state.value if isinstance(state, enum.Enum) else state)


def job_view(job: Any) -> JobView:
    """A Job dataclass (plugin.job_store) as the HTTP model."""
    return JobView(
        id=str(job.id),
        study_instance_uid=str(job.study_instance_uid),
        state=_state(job),
        created_at=_time(job.created_at),
        updated_at=_time(job.updated_at),
        attempts=int(job.attempts or 0),
        error=job.error,
        timings=_jsonable(job.timings, {}),
        summary=_jsonable(job.summary, {}),
        outputs=_jsonable(job.outputs, []),
    )


def _time(value: Any) -> str | float | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return value if value is None or isinstance(value, str | float | int) else str(value)


def _jsonable(value: Any, empty: Any) -> Any:
    if value is None:
        return empty
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return {"text": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    return value
