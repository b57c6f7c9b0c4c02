"""The HTTP API (FastAPI): predict on an upload, jobs, models, health, metrics, web page.

Authentication: every route except ``/healthz``, ``/readyz``, the web page and its static
assets needs ``Authorization: Bearer <settings.api_token>`` (``/metrics`` too: configure
Prometheus with ``authorization: {credentials: ...}``). ``create_app`` raises
``AuthConfigError`` when no token is set, unless ``settings.allow_no_auth`` (local dev only).
Errors are JSON ``{"detail", "code"}`` with 4xx for anything the client can fix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.requests import Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from explain.options import METHODS
from plugin import metrics
from plugin.api.auth import bearer_dependency, check_token_config
from plugin.api.jobs import JobStoreLike, job_counts, open_job_store, preview_png
from plugin.api.jobs import job_view as job_view_of
from plugin.api.limits import RequestGuard
from plugin.api.predict import (
    DEFAULT_METHODS,
    PredictOptions,
    UnsupportedMediaType,
    UploadTooLarge,
    decode_upload,
    predict_upload,
    request_methods,
)
from plugin.api.ready import readiness
from plugin.api.schemas import (
    ErrorResponse,
    HealthResponse,
    JobList,
    JobView,
    ModelRef,
    ModelsResponse,
    PredictResponse,
    ReadinessResponse,
    RegisteredModelVersion,
    ReloadResponse,
)
from plugin.model_service import LoadedModel, ModelService
from plugin.settings import Settings, load_settings
from vocabulary.errors import BrainxaiError, DicomError, InputError, JobError, ModelError
from vocabulary.identity import MODEL_NAME

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREDICT_PATH = "/v1/predict"


@dataclass
class ApiContext:
    """What the API serves: the model service and (optionally) the plugin's job store."""

    models: ModelService
    jobs: JobStoreLike | None = None
    jobs_path: Path | None = None  # file or folder whose writability /readyz checks
    metrics_registry: metrics.Registry = field(default_factory=lambda: metrics.REGISTRY)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiContext:
        """Load the configured model and open the job store; failures leave /readyz at 503."""
        models = ModelService.from_settings(settings)
        try:
            models.load_initial()
        except ModelError as exc:
            log.error("model not loaded (the API will report not ready): %s", exc)
        jobs, path = open_job_store(settings)
        return cls(models=models, jobs=jobs, jobs_path=path)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Malformed request (e.g. a broken multipart body)",
        401: "Missing or wrong bearer token",
        404: "Not found",
        409: "Conflict with the current state",
        413: "Upload too large",
        415: "Unsupported content (not PNG, JPEG or DICOM)",
        422: "Invalid input",
        503: "Not available right now",
    }
    return {c: {"model": ErrorResponse, "description": text[c]} for c in codes}


def _ref(model: LoadedModel) -> ModelRef:
    o = model.origin
    return ModelRef(name=o.name, version=o.version, registry_version=o.registry_version,
                    source=o.source)  # fmt: skip


def create_app(settings: Settings, context: ApiContext | None = None) -> FastAPI:
    """The FastAPI application; raises AuthConfigError without a token (see module doc)."""
    token = check_token_config(settings.api_token, settings.allow_no_auth)
    if token is None:
        log.warning("HTTP API running WITHOUT authentication (allow_no_auth): local dev only")
    ctx = context or ApiContext.from_settings(settings)
    app = FastAPI(
        title="brainxai",
        version="0.1.0",
        description="Brain MR tumour classification with explanations. "
        "RESEARCH USE ONLY, NOT FOR DIAGNOSIS.",
        responses=_errors(422),
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.context = ctx
    app.state.settings = settings
    registry = ctx.metrics_registry
    app.add_middleware(RequestGuard, limited_path=PREDICT_PATH,
                       max_body=settings.max_upload_bytes, registry=registry)  # fmt: skip
    _install_error_handlers(app)
    if ctx.jobs is not None:
        store = ctx.jobs
        registry.set_jobs_source(lambda: job_counts(store))
    registry.set_model_source(ctx.models.identity)
    auth = [Depends(bearer_dependency(token))]
    app.include_router(_public_router(settings, ctx))
    app.include_router(_predict_router(settings, ctx), dependencies=auth)
    app.include_router(_jobs_router(settings, ctx), dependencies=auth)
    app.include_router(_models_router(ctx), dependencies=auth)
    app.include_router(_metrics_router(registry), dependencies=auth)
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def app_factory() -> FastAPI:
    """``uvicorn --factory plugin.api.app:app_factory``: settings from the environment."""
    return create_app(load_settings())


def _public_router(settings: Settings, ctx: ApiContext) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @router.get("/healthz", response_model=HealthResponse, tags=["health"])
    def healthz() -> HealthResponse:
        """Liveness: the process answers HTTP. No authentication."""
        return HealthResponse()

    @router.get(
        "/readyz",
        response_model=ReadinessResponse,
        tags=["health"],
        responses={503: {"model": ReadinessResponse, "description": "Not ready, with reasons"}},
    )
    def readyz() -> JSONResponse:
        """Readiness: model loaded, job store writable, Orthanc /system reachable."""
        body = readiness(settings, ctx.models, ctx.jobs_path)
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    return router


def _predict_router(settings: Settings, ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["predict"])

    @router.post(
        PREDICT_PATH,
        response_model=PredictResponse,
        response_model_by_alias=True,
        responses=_errors(400, 401, 413, 415, 422, 503),
    )
    async def predict(
        file: UploadFile = File(..., description="A PNG, JPEG or DICOM (PS3.10) file"),
        methods: str = Query(
            ",".join(DEFAULT_METHODS),
            max_length=200,
            description=f"Comma-separated, of: {', '.join(METHODS)}",
        ),
        quality: str = Query(
            "fast",
            pattern="^(fast|full)$",
            description="fast: brain mass only; full: also deletion/insertion and ROAD "
            "deletion AUCs (slower)",
        ),
    ) -> PredictResponse:
        """Classify one image and explain the decision. Research use only.

        DICOM: one PS3.10 file; with several frames/slices the middle one is analysed.
        """
        options = PredictOptions(methods=request_methods(methods), quality=quality)
        data = await file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise UploadTooLarge(f"upload larger than {settings.max_upload_bytes} bytes")
        name = file.filename or "upload"
        upload = await run_in_threadpool(decode_upload, data, name)
        model = ctx.models.current()
        return await run_in_threadpool(
            predict_upload, model, upload, options, ctx.models.infer_lock
        )

    return router


def _jobs_router(settings: Settings, ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
    viewer = settings.orthanc_public_url

    def job_view(job: Any) -> JobView:
        return job_view_of(job, viewer)

    def store() -> JobStoreLike:
        if ctx.jobs is None:
            raise HTTPException(503, "no job store configured")
        return ctx.jobs

    @router.get("", response_model=JobList, responses=_errors(401, 503))
    def list_jobs(limit: int = Query(100, ge=1, le=1000)) -> JobList:
        """The most recent jobs, newest first."""
        jobs = [job_view(j) for j in store().list_jobs(limit)]
        return JobList(jobs=jobs, count=len(jobs))

    @router.get("/{job_id}", response_model=JobView, responses=_errors(401, 404, 503))
    def get_job(job_id: str) -> JobView:
        job = store().get(job_id)
        if job is None:
            raise HTTPException(404, "unknown job")
        return job_view(job)

    @router.get(
        "/{job_id}/preview.png",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, **_errors(401, 404, 503)},
    )
    def job_preview(job_id: str) -> Response:
        """A small PNG of the job's middle heatmap overlay (the SC's pixels, burned-in text
        included); 404 when the job has no readable overlay."""
        job = store().get(job_id)
        if job is None:
            raise HTTPException(404, "unknown job")
        outputs = job_view(job).outputs
        paths = [str(p) for p in outputs] if isinstance(outputs, list) else []
        png = preview_png(paths)
        if png is None:
            raise HTTPException(404, "no heatmap overlay for this job")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @router.post("/{job_id}/retry", response_model=JobView, responses=_errors(401, 404, 409, 503))
    def retry_job(job_id: str) -> JobView:
        """Queue a failed or dead-lettered job again (409 otherwise)."""
        jobs = store()
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "unknown job")
        if str(getattr(job.state, "value", job.state)) not in ("failed", "dead_letter"):
            raise HTTPException(409, f"job is {job_view(job).state}, only failed jobs are retried")
        return job_view(jobs.retry(job_id))

    return router


def _models_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1/models", tags=["models"])

    @router.get("", response_model=ModelsResponse, responses=_errors(401, 503))
    def list_models() -> ModelsResponse:
        """Registered MLflow versions of brainxai-densenet169 and the one in use."""
        current = ctx.models.current()
        listing = ctx.models.list_registered()
        rows = [_version_row(v, current) for v in listing.versions]
        return ModelsResponse(name=MODEL_NAME, in_use=_ref(current), registered=rows,
                              registry_error=listing.error)  # fmt: skip

    @router.post("/reload", response_model=ReloadResponse, responses=_errors(401, 409))
    def reload_model() -> ReloadResponse:
        """Switch to the registry's current ``champion`` without a restart."""
        try:
            previous, current = ctx.models.reload()
        except ModelError as exc:
            raise HTTPException(409, str(exc)) from exc
        prev_ref = _ref(previous) if previous is not None else _ref(current)
        changed = previous is None or previous.origin.sha256 != current.origin.sha256
        return ReloadResponse(previous=prev_ref, current=_ref(current), changed=changed)

    return router


def _version_row(v: dict[str, Any], current: LoadedModel) -> RegisteredModelVersion:
    tags = v.get("tags", {})
    try:
        acc: float | None = float(tags["val_accuracy"])
    except (KeyError, ValueError):
        acc = None
    o = current.origin
    in_use = str(v["version"]) == o.registry_version or (
        bool(o.sha256) and tags.get("bundle_sha256") == o.sha256
    )
    return RegisteredModelVersion(
        version=str(v["version"]), aliases=list(v.get("aliases", [])), val_accuracy=acc,
        bundle_version=tags.get("bundle_version"), in_use=in_use,
    )  # fmt: skip


def _metrics_router(registry: metrics.Registry) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(401),
        },
    )
    def prometheus() -> PlainTextResponse:
        """Prometheus text exposition (bearer token required)."""
        return PlainTextResponse(registry.render(), media_type=metrics.CONTENT_TYPE)

    return router


def _error(status: int, detail: str, code: str, headers: Mapping[str, str] | None = None) -> Any:
    body = ErrorResponse(detail=detail, code=code).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid_input",
          503: "unavailable"}  # fmt: skip


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Any:
        code = _CODES.get(exc.status_code, "error")
        return _error(exc.status_code, str(exc.detail), code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Any:
        parts = [
            f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()[:5]
        ]
        return _error(422, "; ".join(parts) or "invalid request", "invalid_input")

    @app.exception_handler(BrainxaiError)
    async def brainxai_error(_: Request, exc: BrainxaiError) -> Any:
        if isinstance(exc, UploadTooLarge):
            return _error(413, str(exc), "too_large")
        if isinstance(exc, UnsupportedMediaType):
            return _error(415, str(exc), "unsupported_media_type")
        if isinstance(exc, InputError | DicomError):
            return _error(422, str(exc), "invalid_input")
        if isinstance(exc, JobError):
            return _error(409, str(exc), "conflict")
        if isinstance(exc, ModelError):
            return _error(503, str(exc), "model_unavailable")
        log.error("unhandled %s: %s", type(exc).__name__, exc)
        return _error(500, "internal error", "internal")
