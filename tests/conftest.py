"""Shared test helpers: where the shared data lives, and skips when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BRAINXAI_SHARED_DATA", REPO.parent / "shared" / "data"))
BUNDLED_MODEL = REPO / "models" / "brainxai-densenet169.pt"

os.environ.setdefault("OMP_NUM_THREADS", "2")


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with a clear reason if it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p} (expected ../shared/data beside the repo)")
    return p


@pytest.fixture
def bundled_model() -> Path:
    if not BUNDLED_MODEL.is_file():
        pytest.skip(f"bundled model missing: {BUNDLED_MODEL}")
    return BUNDLED_MODEL
