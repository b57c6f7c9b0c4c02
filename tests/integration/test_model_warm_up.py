"""The analysing thread (embedded worker, distributed worker host) warms the model up
before its first study; a test processor has no model and nothing to warm."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from plugin.job_store import JobStore
from plugin.service.wiring import warm_up_model, worker_context
from tests.integration.api_support import make_settings, model_path


def test_worker_context_warms_the_real_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, model=str(model_path()))
    context = worker_context(settings, JobStore(tmp_path / "jobs.sqlite"))
    assert context.models is not None
    with caplog.at_level(logging.INFO, logger="plugin.service.wiring"):
        warm_up_model(context, settings.methods)
    assert any(r.getMessage().startswith("model warm-up in") for r in caplog.records)
    assert context.get_classifier().version  # loaded once, kept for the first study


def test_a_test_processor_has_nothing_to_warm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, processor="plugin_processor:make_processor")
    context = worker_context(settings, JobStore(tmp_path / "jobs.sqlite"))
    assert context.models is None
    with caplog.at_level(logging.INFO, logger="plugin.service.wiring"):
        warm_up_model(context, settings.methods)
    assert not any("warm-up" in r.getMessage() for r in caplog.records)
