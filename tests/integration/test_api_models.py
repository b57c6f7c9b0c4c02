"""GET /v1/models and POST /v1/models/reload against a real MLflow store (SQLite, tmp)."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_support import AUTH, make_settings, model_path, phantom_png
from fastapi.testclient import TestClient

from inference.registry import log_bundle, tracking_run
from plugin.api.app import ApiContext, create_app
from plugin.job_store import JobStore
from plugin.model_service import ModelService
from vocabulary.identity import MODEL_NAME

pytestmark = pytest.mark.slow


def test_models_listing_and_champion_reload(tmp_path: Path) -> None:
    bundle = model_path()
    settings = make_settings(tmp_path, model=str(bundle))
    models = ModelService.from_settings(settings)
    models.load_initial()
    ctx = ApiContext(models, JobStore(tmp_path / "jobs.sqlite"), tmp_path / "jobs.sqlite")
    client = TestClient(create_app(settings, ctx))

    body = client.get("/v1/models", headers=AUTH).json()
    assert body["name"] == MODEL_NAME and body["registered"] == []
    assert body["in_use"]["source"] == bundle.name and body["in_use"]["registry_version"] is None

    r = client.post("/v1/models/reload", headers=AUTH)
    assert r.status_code == 409 and "champion" in r.json()["detail"]

    with tracking_run(settings.tracking_uri(), "test-register"):
        reg = log_bundle(bundle, val_accuracy=0.5)
    assert reg.is_champion

    listed = client.get("/v1/models", headers=AUTH).json()["registered"]
    assert [v["version"] for v in listed] == [reg.version]
    assert listed[0]["aliases"] == ["champion"] and listed[0]["in_use"] is True  # same file
    assert listed[0]["val_accuracy"] == pytest.approx(0.5)

    r = client.post("/v1/models/reload", headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["current"]["registry_version"] == reg.version
    assert out["current"]["source"] == f"models:/{MODEL_NAME}/{reg.version}"
    assert out["changed"] is False  # the same bundle file, now from the registry

    pred = client.post("/v1/predict", files={"file": ("a", phantom_png())}, headers=AUTH)
    assert pred.status_code == 200 and pred.json()["model"]["registry_version"] == reg.version
    assert client.post("/v1/models/reload").status_code == 401
