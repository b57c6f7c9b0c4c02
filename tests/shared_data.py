"""Where the shared read-only data is: the one place tests, fuzz targets and bench scripts ask.

``$BRAINXAI_SHARED_DATA`` when set, else ``../shared/data`` beside the repository. The data
is read in place, never copied into the repository. ``shared(...)`` skips the calling test
with a clear reason when a part is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "BRAINXAI_SHARED_DATA"
SHARED_DATA = Path(os.environ.get(ENV_VAR) or REPO.parent / "shared" / "data")
DICOM = SHARED_DATA / "dicom"


def shared(*parts: str) -> Path:
    """A path under the shared data folder, or skip the test if it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p} (set {ENV_VAR} or put it at ../shared/data)")
    return p
