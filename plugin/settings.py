"""The one settings object (environment prefix BRAINXAI_, optional YAML/JSON file).

Create it where needed with ``load_settings()``; never at import time. Loading also hands
the layers below ``plugin/`` (which read no environment) their process-wide knobs
(``inference.runtime``): bf16 autocast, the model download cache, the MLflow artifact
location, the SAE file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from dicom_io.palettes import PALETTES
from explain.options import DEFAULT_METHODS, parse_methods
from inference.runtime import Runtime, configure
from vocabulary.errors import InputError

MAX_QUALITY_SLICES = 8


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRAINXAI_", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Job store, received files, MLflow store")
    model: str | None = Field(
        None, description="Bundle file, s3:// or gs:// URI, or models:/ URI; None = bundled"
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="Default: sqlite:///<data_dir>/mlflow.db (MLFLOW_TRACKING_URI wins)"
    )
    mlflow_artifact_location: str | None = Field(
        None,
        description="Where a new `brainxai` MLflow experiment keeps its artifacts, e.g. "
        "s3://bucket/mlflow; None: MLflow's default",
    )
    model_cache_dir: Path | None = Field(
        None,
        description="Downloaded bundles (object storage, registry); None: "
        "$XDG_CACHE_HOME/brainxai/models (~/.cache/brainxai/models)",
    )
    bf16: bool | None = Field(
        None,
        description="Force bfloat16 autocast on (true) or off (false); None: on only when "
        "the CPU has native bf16 (emulated bf16 is about 8x slower)",
    )
    sae: Path | None = Field(
        None,
        description="SAE file the `sae` explanation method uses; None: "
        "models/<name>-<weights version>.sae.pt beside the bundled model",
    )

    # DICOM node
    ae_title: str = "BRAINXAI"
    dicom_host: str = "0.0.0.0"
    dicom_port: int = 11112
    allowed_calling_aets: list[str] = Field(default_factory=lambda: ["ORTHANC"])
    quiet_seconds: float = 0.5
    store_fsync: bool = Field(True, description="fsync each received instance before success")
    min_free_mb: float = Field(
        500.0,
        description="Free space under data_dir below which instances are refused (out of "
        "resources, the sender retries) and /readyz fails",
    )

    # Robustness of the job store and the service's loops
    store_busy_timeout_seconds: float = Field(
        5.0, description="How long a job-store call waits for a lock another process holds"
    )
    loop_backoff_max_seconds: float = Field(
        30.0, description="Longest wait between retries of a failing worker/delivery loop"
    )
    loop_unready_seconds: float = Field(
        60.0, description="A loop failing without a break for this long makes /readyz fail"
    )

    # Orthanc (delivery target)
    orthanc_url: str = "http://127.0.0.1:8042"
    orthanc_username: str | None = None
    orthanc_password: str | None = None
    orthanc_public_url: str | None = Field(
        None,
        description="Orthanc as a browser reaches it (e.g. http://pacs.example:8042); the web "
        "page links each job's study to its OHIF viewer at <this>/ohif/. None: no link",
    )
    orthanc_aet: str = "ORTHANC"
    orthanc_dicom_host: str = "127.0.0.1"
    orthanc_dicom_port: int = 4242
    delivery: str = Field("cstore", pattern="^(cstore|stowrs|rest)$")
    retention_hours: float = 0.0
    delivery_confirm: str = Field("rest", pattern="^(rest|cfind)$")
    delivery_backoff_seconds: float = 1.0
    delivery_backoff_max_seconds: float = 300.0
    delivery_max_attempts: int = 30
    max_processing_attempts: int = 3
    processor: str | None = Field(
        None, description="'module:factory' returning a custom processor; None = the pipeline"
    )

    # Distributed mode (plugin.service.distributed; README "Distributed mode"): off by default
    mode: str = Field(
        "embedded",
        pattern="^(embedded|distributed)$",
        description="embedded: one process (SQLite, local worker); distributed: the DICOM "
        "node queues studies on RabbitMQ for `brainxai worker` processes, jobs in PostgreSQL",
    )
    broker_url: str | None = Field(None, description="amqp://user:password@host:5672/vhost")
    database_url: str | None = Field(None, description="postgresql://user:password@host/db")
    queue: str = Field("brainxai.studies", description="RabbitMQ queue of study jobs")
    worker_name: str | None = Field(None, description="This worker's name; default: host name")
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(9101, description="A worker's /healthz and /metrics")
    republish_queued_after_seconds: float = Field(
        600.0,
        gt=0,
        description="At the node's start, queued jobs older than this are published again "
        "(their message may have been lost with the broker's data)",
    )

    # Pipeline
    methods: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_METHODS),
        description="Explanation methods shown (SC overlays of the first, one PM each): a "
        "comma list (BRAINXAI_METHODS=gradcam,saliency) or a list in the settings file",
    )
    selection_rules: Path | None = None
    quality_slices: int = Field(
        0,
        ge=0,
        le=MAX_QUALITY_SLICES,
        description="Deletion, insertion and ROAD curves of each explanation on the N most "
        "confident slices of a series (about 1.45 s per slice on 2 CPU cores); 0: only the "
        "brain-mass check, which keeps a routed 24-slice study's analysis near 1.4 s",
    )
    float_maps: bool = Field(
        True,
        description="Float Parametric Maps, which OHIF fuses over the MR; false: 16-bit "
        "integer maps for Orthanc's Web Viewer",
    )
    map_palette: str | None = Field(
        None,
        description="Colour presentation of the Parametric Maps with a well-known DICOM "
        "palette (HOT_IRON, PET, ...); off by default (dicom_io/parametric_map.py says why)",
    )

    @field_validator("methods", mode="before")
    @classmethod
    def _known_methods(cls, value: Any) -> list[str]:
        """A comma list, a JSON list or a list of names (explain.options.parse_methods)."""
        if isinstance(value, str) and value.strip().startswith("["):
            value = json.loads(value)  # the JSON list other list settings take
        try:
            return list(parse_methods(value if isinstance(value, str) else list(value)))
        except InputError as exc:
            raise ValueError(f"methods must be known explanation methods: {exc}") from exc

    @field_validator("bf16", "model_cache_dir", "mlflow_artifact_location", "sae", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty variable (BRAINXAI_BF16=) means "not set", as these always have."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("map_palette")
    @classmethod
    def _known_palette(cls, value: str | None) -> str | None:
        if value is not None and value not in PALETTES:
            raise ValueError(f"map_palette must be one of {', '.join(PALETTES)}")
        return value

    # HTTP API
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    api_token: str | None = None
    allow_no_auth: bool = Field(False, description="Local development only: no bearer token")
    max_upload_bytes: int = 64 * 1024 * 1024

    def runtime(self) -> Runtime:
        """The process-wide knobs of the layers below plugin/ (inference.runtime)."""
        return Runtime(
            bf16=self.bf16,
            model_cache_dir=self.model_cache_dir,
            mlflow_artifact_location=self.mlflow_artifact_location,
            sae_file=self.sae,
        )

    def tracking_uri(self) -> str:
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, overlaid by an optional YAML/JSON file and overrides."""
    values: dict[str, Any] = {}
    file = path or os.environ.get("BRAINXAI_CONFIG")
    if file:
        try:
            text = Path(file).read_text()
            loaded = json.loads(text) if str(file).endswith(".json") else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise InputError(f"settings file {file}: {exc}") from exc
        if not isinstance(loaded, dict | None):
            raise InputError(f"settings file {file}: not a mapping of settings")
        values.update(loaded or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    configure(settings.runtime())
    return settings
