"""The job store as the API sees it: a small protocol and the JSON view of a job."""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from PIL import Image

from dicom_io.files import overlay_pixels
from plugin import job_store
from plugin.api.schemas import JobView
from plugin.settings import Settings
from vocabulary.sentence import study_sentence

log = logging.getLogger(__name__)

COUNT_LIMIT = 100_000
PREVIEW_MAX_SIDE = 256


class JobStoreLike(Protocol):
    def list_jobs(self, limit: int) -> list[Any]: ...

    def get(self, job_id: str) -> Any | None: ...

    def retry(self, job_id: str) -> Any: ...


def open_job_store(settings: Settings) -> tuple[JobStoreLike | None, Path | None]:
    """The plugin's job store under settings.data_dir, or (None, None) if unavailable."""
    path = job_store.default_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return job_store.JobStore(path), path


def preview_png(paths: list[str], max_side: int = PREVIEW_MAX_SIDE) -> bytes | None:
    """The job's middle SC overlay as a PNG at most ``max_side`` pixels wide and high."""
    rgb = overlay_pixels(paths)
    if rgb is None:
        return None
    image = Image.fromarray(rgb)
    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def job_counts(store: JobStoreLike) -> Mapping[str, int]:
    """{state: count} for /metrics; uses the store's own counter when it has one."""
    counter = getattr(store, "count_by_state", None)
    if callable(counter):
        return {str(k): int(v) for k, v in counter().items()}
    return Counter(_state(j) for j in store.list_jobs(COUNT_LIMIT))


def _state(job: Any) -> str:
    state = job.state
    return str(state.value if isinstance(state, enum.Enum) else state)


def job_view(job: Any, viewer_base: str | None = None) -> JobView:
    """A Job dataclass (plugin.job_store) as the HTTP model.

    ``decision`` and ``sentence`` are the study's, from the pipeline summary (the sentence of
    ``vocabulary.sentence``); ``viewer_url`` opens the study in OHIF when ``viewer_base``
    (settings.orthanc_public_url) is configured.
    """
    summary = _jsonable(job.summary, {})
    decision, sentence = study_decision(summary)
    study = str(job.study_instance_uid)
    viewer = None
    if viewer_base:
        viewer = f"{viewer_base.rstrip('/')}/ohif/viewer.html?StudyInstanceUIDs={quote(study)}"
    return JobView(
        id=str(job.id),
        study_instance_uid=study,
        state=_state(job),
        created_at=_time(job.created_at),
        updated_at=_time(job.updated_at),
        attempts=int(job.attempts or 0),
        error=job.error,
        decision=decision,
        sentence=sentence,
        viewer_url=viewer,
        timings=_jsonable(job.timings, {}),
        summary=summary,
        outputs=_jsonable(job.outputs, []),
    )


def study_decision(summary: Any) -> tuple[str | None, str | None]:
    """(class, sentence) of the first study of a pipeline summary; (None, None) if none."""
    studies = summary.get("studies") if isinstance(summary, dict) else None
    if not studies or not isinstance(studies[0], dict):
        return None, None
    study = studies[0]
    prediction = study.get("prediction") or {}
    label = prediction.get("class")
    if label is None:
        return None, None
    reason = str(prediction.get("reason") or "")
    sentence = study.get("sentence") or study_sentence(str(label), reason)
    return str(label), str(sentence)


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
