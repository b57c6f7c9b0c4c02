"""Schemathesis against the OpenAPI schema: generated requests never cause a 5xx.

Positive and negative examples, bounded to MAX_EXAMPLES per operation and mode so the run
stays well under a minute. (Driven through Hypothesis directly: schemathesis' pytest
fixture integration does not work with pytest 9.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from api_support import AUTH, make_app
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def _fuzz(operation: Any, mode: GenerationMode, outcomes: dict[str, set[int]]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def run(case: Any) -> None:
        if operation.label == "GET /readyz":  # its documented 503 means "not ready" (no Orthanc)
            assert case.call(headers=AUTH).status_code in (200, 503)
            return
        response = case.call_and_validate(headers=AUTH, checks=CHECKS)
        outcomes.setdefault(operation.label, set()).add(response.status_code)
        assert case.call().status_code < 500  # without the token: 401 (or 404), never 5xx

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise  # only operations without parameters have no invalid inputs


def test_no_server_errors(tmp_path: Path) -> None:
    app = make_app(tmp_path, max_upload_bytes=200_000)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    outcomes: dict[str, set[int]] = {}
    labels = []
    for result in schema.get_all_operations():
        operation = cast(Any, result).ok()  # an invalid schema (Err) fails here
        labels.append(operation.label)
        for mode in MODES:
            _fuzz(operation, mode, outcomes)
    assert "POST /v1/predict" in labels and "GET /v1/jobs/{job_id}" in labels
    assert all(code < 500 for codes in outcomes.values() for code in codes), outcomes
    assert 422 in outcomes["POST /v1/predict"]  # fuzzed uploads were refused cleanly


def test_schema_file_is_complete(tmp_path: Path) -> None:
    """Every operation documents a typed 200 body; predict documents its error codes."""
    spec = TestClient(make_app(tmp_path)).get("/openapi.json").json()
    predict = spec["paths"]["/v1/predict"]["post"]
    assert {"200", "401", "413", "415", "422", "503"} <= set(predict["responses"])
    body = spec["components"]["schemas"]["PredictResponse"]
    assert {"class", "probabilities", "model", "disclaimer", "explanations"} <= set(
        body["properties"]
    )
