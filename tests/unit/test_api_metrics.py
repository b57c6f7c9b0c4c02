"""The Prometheus registry: counters, histograms, label hygiene, text format, isolation."""

from __future__ import annotations

import sqlite3

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from plugin.api.app import ApiContext, create_app
from plugin.metrics import Registry, safe_label
from plugin.model_service import ModelService
from plugin.settings import Settings

TOKEN = "unit-test-token-0123456789"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a text exposition, keyed by (sample name, label set)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, metric: str, /, **labels: str) -> float | None:
    return samples(text).get((metric, frozenset(labels.items())))


def test_histogram_buckets_are_cumulative() -> None:
    reg = Registry()
    for s in (0.003, 0.04, 0.04, 3.0):
        reg.observe_stage("explain", s)
    reg.observe_stage("explain", float("nan"))  # ignored
    reg.observe_stage("explain", -1.0)  # ignored
    text = reg.render()
    assert "# TYPE brainxai_stage_seconds histogram" in text
    assert value(text, "brainxai_stage_seconds_bucket", stage="explain", le="0.005") == 1
    assert value(text, "brainxai_stage_seconds_bucket", stage="explain", le="0.05") == 3
    assert value(text, "brainxai_stage_seconds_bucket", stage="explain", le="+Inf") == 4
    assert value(text, "brainxai_stage_seconds_count", stage="explain") == 4
    assert value(text, "brainxai_stage_seconds_sum", stage="explain") == pytest.approx(3.083)


def test_counters_and_jobs_callback() -> None:
    reg = Registry()
    reg.inc_received(5)
    reg.inc_retry()
    reg.inc_retry()
    reg.inc_loop_error("worker")
    reg.inc_http("/v1/jobs/{job_id}", "GET", 200)
    reg.set_jobs_source(lambda: {"failed": 2, "delivered": 7})
    text = reg.render()
    assert "# TYPE brainxai_received_instances_total counter" in text
    assert value(text, "brainxai_received_instances_total") == 5
    assert value(text, "brainxai_delivery_retries_total") == 2
    assert value(text, "brainxai_loop_errors_total", loop="worker") == 1
    labels = {"route": "/v1/jobs/{job_id}", "method": "GET", "status": "200"}
    assert value(text, "brainxai_http_requests_total", **labels) == 1
    assert value(text, "brainxai_jobs", state="delivered") == 7
    assert value(text, "brainxai_jobs", state="failed") == 2
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.startswith("#") or line.startswith("brainxai_"), line
    assert "_created" not in text  # counters expose *_total only, as before


def test_model_info_and_failing_jobs_source() -> None:
    reg = Registry()
    assert not any(n == "brainxai_model_info" for n, _ in samples(reg.render()))
    reg.set_model_source(lambda: ("brainxai-densenet169", "202612022123"))

    def broken() -> dict[str, int]:
        raise sqlite3.OperationalError("database is locked")

    reg.set_jobs_source(broken)
    text = reg.render()
    labels = {"name": "brainxai-densenet169", "version": "202612022123"}
    assert value(text, "brainxai_model_info", **labels) == 1
    assert value(text, "brainxai_jobs_scrape_error") == 1
    assert "# TYPE brainxai_jobs gauge" in text


def test_registries_do_not_share_values() -> None:
    a, b = Registry(), Registry()
    a.inc_received(3)
    assert value(a.render(), "brainxai_received_instances_total") == 3
    assert value(b.render(), "brainxai_received_instances_total") == 0


def test_each_app_serves_its_own_registry() -> None:
    settings = Settings(api_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    regs = [Registry(), Registry()]
    clients = [
        TestClient(
            create_app(
                settings, ApiContext(ModelService(None, "sqlite:///u.db"), metrics_registry=r)
            )
        )  # fmt: skip
        for r in regs
    ]
    regs[0].inc_retry(4)
    for _ in range(3):
        assert clients[1].get("/healthz").status_code == 200
    first = clients[0].get("/metrics", headers=auth).text
    second = clients[1].get("/metrics", headers=auth).text
    assert value(first, "brainxai_delivery_retries_total") == 4
    assert value(second, "brainxai_delivery_retries_total") == 0
    healthz = {"route": "/healthz", "method": "GET", "status": "200"}
    assert value(first, "brainxai_http_requests_total", **healthz) is None
    assert value(second, "brainxai_http_requests_total", **healthz) == 3


def test_label_values_cannot_carry_free_text() -> None:
    assert safe_label('DOE^JOHN "x"\n') == "DOE_JOHN__x__"
    assert len(safe_label("a" * 500)) == 64
    reg = Registry()
    reg.observe_stage('bad"stage\n', 1.0)
    assert value(reg.render(), "brainxai_stage_seconds_count", stage="bad_stage_") == 1
