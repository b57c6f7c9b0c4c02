"""Pydantic models of the HTTP API (request options and every response body).

Internal code passes frozen dataclasses around; these models exist only at the HTTP edge so
that the OpenAPI schema describes every response completely.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

DISCLAIMER = (
    "RESEARCH USE ONLY. NOT FOR DIAGNOSIS. This output has not been cleared by any regulator "
    "and must not be used for clinical decisions."
)


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: a human-readable reason and a stable machine code."""

    detail: str = Field(..., description="What went wrong, in words")
    code: str = Field(..., description="Stable error code, e.g. unsupported_media_type")


class ModelRef(BaseModel):
    name: str
    version: str = Field(..., description="Bundle version (training timestamp)")
    registry_version: str | None = Field(None, description="MLflow registered version, if any")
    source: str = Field(..., description="'bundled', a file name or a models:/ URI")


class SourceInfo(BaseModel):
    kind: str = Field(..., description="png, jpeg or dicom (sniffed from the bytes)")
    rows: int
    columns: int
    frame_index: int = Field(0, description="Slice used (DICOM: the middle slice of the series)")
    frame_count: int = Field(1, description="Slices in the uploaded series")
    series_instance_uid: str | None = None


class MethodExplanation(BaseModel):
    method: str
    quality: dict[str, float | None] = Field(
        default_factory=dict,
        description="explain.quality metrics: brain_mass, head_fraction (chance level of "
        "brain_mass); with quality=full also deletion/insertion AUCs and random-map references",
    )
    failed_checks: list[str] = Field(
        default_factory=list,
        description="Quality checks this explanation fails (empty: none failed): brain_mass "
        "(below 0.5), and with quality=full deletion, road_deletion (area above the random "
        "map's) and insertion (below it). A failing map is a hint at best, not evidence",
    )
    overlay_png: str = Field(..., description="data:image/png;base64 heatmap blended on image")
    raw_png16: str = Field(
        ...,
        description="data:image/png;base64 raw map in model space as 16-bit grey; its min and "
        "max in original units are in the PNG tEXt chunks brainxai:min / brainxai:max",
    )
    seconds: float = Field(..., description="Time spent computing this explanation")


class PredictResponse(BaseModel):
    predicted_class: str | None = Field(
        ...,
        serialization_alias="class",
        description="The class (JSON key 'class'); null when the image is out of scope "
        "(then 'reason' says why and 'model_output' is not a result)",
    )
    model_output: str = Field(
        ..., description="The model's most probable class: a raw output, not a result"
    )
    reason: str | None = Field(None, description="Why no class is given (out of scope)")
    sentence: str = Field(..., description="The decision in one sentence (vocabulary.sentence)")
    probabilities: dict[str, float]
    model: ModelRef
    disclaimer: str = DISCLAIMER
    research_use_only: bool = True
    ood_score: float = Field(..., description="Feature distance to the training data")
    source: SourceInfo
    image_png: str = Field(..., description="data:image/png;base64 grey image that was analysed")
    explanations: dict[str, MethodExplanation]
    timings_ms: dict[str, float]


class JobView(BaseModel):
    """One plugin job: a study received from Orthanc and what was done with it."""

    id: str
    study_instance_uid: str
    state: str
    created_at: str | float | None = None
    updated_at: str | float | None = None
    attempts: int = 0
    error: str | None = None
    timings: dict[str, Any] = Field(default_factory=dict, description="Seconds per stage")
    decision: str | None = Field(
        None, description="The study's class, 'indeterminate' or 'error'; null before a result"
    )
    sentence: str | None = Field(None, description="The study's decision in one sentence")
    viewer_url: str | None = Field(
        None, description="The study in the OHIF viewer (needs settings.orthanc_public_url)"
    )
    summary: dict[str, Any] = Field(
        default_factory=dict, description="Decision, selected and skipped series with reasons"
    )
    outputs: list[Any] | dict[str, Any] = Field(
        default_factory=list, description="Instances written and where they were delivered"
    )


class JobList(BaseModel):
    jobs: list[JobView]
    count: int


class RegisteredModelVersion(BaseModel):
    version: str
    aliases: list[str] = Field(default_factory=list)
    val_accuracy: float | None = None
    bundle_version: str | None = None
    in_use: bool = False


class ModelsResponse(BaseModel):
    name: str
    in_use: ModelRef
    registered: list[RegisteredModelVersion]
    registry_error: str | None = Field(None, description="Why the registry could not be read")


class ReloadResponse(BaseModel):
    previous: ModelRef
    current: ModelRef
    changed: bool


class HealthResponse(BaseModel):
    status: str = "ok"


class CheckResult(BaseModel):
    ok: bool
    detail: str = ""


class ReadinessResponse(BaseModel):
    ready: bool
    checks: dict[str, CheckResult]
