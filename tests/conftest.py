"""Shared test helpers: the bundled model, the test tiers, the shared data (tests.shared_data).

Tiers (scripts/test.sh): everything under tests/integration (real Orthanc, network, MLflow
stores, browser) and tests/fuzz (the shared DICOM data mutated and fed to the reader,
writers and a real SCP over DICOM associations; half a minute of CPU) is marked
``integration`` here, so ``-m "not integration and not slow"`` is the fast tier: tests/unit,
no services, no model training, no shared data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.runtime import Runtime, configure
from tests.shared_data import REPO, SHARED_DATA, shared

__all__ = ["BUNDLED_MODEL", "REPO", "SHARED_DATA", "shared"]

BUNDLED_MODEL = REPO / "models" / "brainxai-densenet169.pt"
INTEGRATION_DIRS = tuple(Path(__file__).resolve().parent / d for d in ("integration", "fuzz"))

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration and tests/fuzz as ``integration``."""
    for item in items:
        if any(d in item.path.parents for d in INTEGRATION_DIRS):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _default_runtime() -> Iterator[None]:
    """Each test starts and ends with the default process-wide knobs (inference.runtime):
    a test whose settings set them does not leak them into the next."""
    configure(Runtime())
    yield
    configure(Runtime())


@pytest.fixture
def bundled_model() -> Path:
    if not BUNDLED_MODEL.is_file():
        pytest.skip(f"bundled model missing: {BUNDLED_MODEL}")
    return BUNDLED_MODEL
