"""Process-wide knobs of the layers below ``plugin/``, which read no environment.

``plugin.settings.load_settings`` sets them from the one settings object (BRAINXAI_BF16,
BRAINXAI_MODEL_CACHE_DIR, BRAINXAI_MLFLOW_ARTIFACT_LOCATION, BRAINXAI_SAE); code that never
loads settings (a library user, a unit test) gets the defaults, or calls ``configure``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Runtime:
    bf16: bool | None = None  # force bf16 autocast on/off; None: native bf16 detection
    model_cache_dir: Path | None = None  # downloaded bundles; None: XDG cache
    mlflow_artifact_location: str | None = None  # a new experiment's artifacts; None: MLflow's
    sae_file: Path | None = None  # the `sae` method's SAE; None: beside the bundled model


_current: list[Runtime] = [Runtime()]


def configure(runtime: Runtime) -> None:
    """Set this process's knobs (all of them: unset fields go back to their defaults)."""
    _current[0] = runtime


def current() -> Runtime:
    return _current[0]
