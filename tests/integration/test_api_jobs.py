"""Jobs endpoints and /metrics against a real SQLite job store in a temporary folder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from api_support import AUTH, finished_job, make_settings
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from plugin import metrics
from plugin.api.app import ApiContext, create_app
from plugin.job_store import JobStore
from plugin.model_service import ModelService

STUDY_A = "1.2.826.0.1.3680043.8.498.1001"
STUDY_B = "1.2.826.0.1.3680043.8.498.1002"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[TestClient, JobStore]:
    settings = make_settings(tmp_path)
    store = JobStore(tmp_path / "jobs.sqlite")
    ctx = ApiContext(ModelService(None, settings.tracking_uri()), store, tmp_path / "jobs.sqlite")
    return TestClient(create_app(settings, ctx)), store


def test_list_get_and_retry(setup: tuple[TestClient, JobStore]) -> None:
    client, store = setup
    ok = store.touch_study(STUDY_A)
    failed = store.touch_study(STUDY_B)
    assert store.fail(failed, "delivery failed 3 times: connection refused")

    r = client.get("/v1/jobs", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 2
    states = {j["study_instance_uid"]: j["state"] for j in body["jobs"]}
    assert states == {STUDY_A: "received", STUDY_B: "failed"}

    one = client.get(f"/v1/jobs/{failed.id}", headers=AUTH).json()
    assert one["error"].startswith("delivery failed") and one["state"] == "failed"

    r = client.post(f"/v1/jobs/{ok.id}/retry", headers=AUTH)
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    r = client.post(f"/v1/jobs/{failed.id}/retry", headers=AUTH)
    assert r.status_code == 200 and r.json()["state"] == "received"
    assert store.get(failed.id).state == "received"  # type: ignore[union-attr]

    assert client.get("/v1/jobs/nope", headers=AUTH).status_code == 404
    assert client.post("/v1/jobs/nope/retry", headers=AUTH).status_code == 404
    assert client.get("/v1/jobs?limit=1", headers=AUTH).json()["count"] == 1
    assert client.get("/v1/jobs?limit=0", headers=AUTH).status_code == 422


def test_jobs_need_token(setup: tuple[TestClient, JobStore]) -> None:
    client, _ = setup
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/metrics").status_code == 401


def test_metrics_count_jobs_by_state_without_uids(setup: tuple[TestClient, JobStore]) -> None:
    client, store = setup
    job = store.touch_study(STUDY_A)
    store.fail(job, "boom")
    store.touch_study(STUDY_B)
    metrics.observe_stage("inference", 0.07)
    metrics.inc_received(3)
    metrics.inc_retry()
    assert client.get(f"/v1/jobs/{job.id}", headers=AUTH).status_code == 200
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    found = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert found[("brainxai_jobs", frozenset({("state", "failed")}))] == 1
    assert found[("brainxai_jobs", frozenset({("state", "received")}))] == 1
    assert (
        "brainxai_stage_seconds_bucket",
        frozenset({("stage", "inference"), ("le", "0.1")}),
    ) in found
    assert ("brainxai_received_instances_total", frozenset()) in found
    route = {("route", "/v1/jobs/{job_id}"), ("method", "GET"), ("status", "200")}
    assert found[("brainxai_http_requests_total", frozenset(route))] >= 1  # template, not id
    assert STUDY_A not in text and STUDY_B not in text and job.id not in text


def test_no_job_store_is_503(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    ctx = ApiContext(ModelService(None, settings.tracking_uri()))
    client = TestClient(create_app(settings, ctx))
    r = client.get("/v1/jobs", headers=AUTH)
    assert r.status_code == 503 and r.json()["code"] == "unavailable"


def test_a_finished_job_has_decision_sentence_viewer_link_and_preview(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, orthanc_public_url="http://pacs.example:8042/")
    store = JobStore(tmp_path / "jobs.sqlite")
    ctx = ApiContext(ModelService(None, settings.tracking_uri()), store, tmp_path / "jobs.sqlite")
    client = TestClient(create_app(settings, ctx))
    job = finished_job(store, STUDY_A, tmp_path / "results")
    pending = store.touch_study(STUDY_B)

    view = client.get(f"/v1/jobs/{job.id}", headers=AUTH).json()
    assert view["decision"] == "glioma"
    assert view["sentence"] == "Finding: Glioma (series vote: all 1 assessed series called glioma)."
    assert view["viewer_url"] == (
        f"http://pacs.example:8042/ohif/viewer.html?StudyInstanceUIDs={STUDY_A}"
    )
    r = client.get(f"/v1/jobs/{job.id}/preview.png", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.mode == "RGB" and max(im.size) <= 256
        rgb = np.asarray(im)
    assert float((rgb.max(axis=-1).astype(int) - rgb.min(axis=-1)).mean()) > 10  # coloured
    assert client.get(f"/v1/jobs/{job.id}/preview.png").status_code == 401
    r = client.get(f"/v1/jobs/{pending.id}/preview.png", headers=AUTH)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    other = client.get(f"/v1/jobs/{pending.id}", headers=AUTH).json()
    assert other["decision"] is None and other["sentence"] is None

    plain = TestClient(create_app(make_settings(tmp_path), ctx))
    assert plain.get(f"/v1/jobs/{job.id}", headers=AUTH).json()["viewer_url"] is None
