"""Bearer-token rules: refuse to start without a token, 401 without the right one."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from plugin.api.app import ApiContext, create_app
from plugin.api.auth import AuthConfigError, check_token_config
from plugin.model_service import ModelService
from plugin.settings import Settings
from vocabulary.errors import BrainxaiError

TOKEN = "unit-test-token-0123456789"


def _app(**kw: object) -> TestClient:
    settings = Settings(**kw)  # type: ignore[arg-type]
    ctx = ApiContext(ModelService(None, "sqlite:///unused.db"))
    return TestClient(create_app(settings, ctx))


def test_refuses_to_start_without_token() -> None:
    with pytest.raises(AuthConfigError) as info:
        _app(api_token=None)
    assert isinstance(info.value, BrainxaiError)
    assert "BRAINXAI_API_TOKEN" in str(info.value)


def test_short_token_is_refused() -> None:
    with pytest.raises(AuthConfigError):
        check_token_config("short", allow_no_auth=False)


def test_explicit_dev_flag_disables_auth() -> None:
    client = _app(api_token=None, allow_no_auth=True)
    assert client.get("/metrics").status_code == 200


def test_token_required_except_health_and_page() -> None:
    client = _app(api_token=TOKEN)
    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):  # fmt: skip
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["code"] == "unauthorized"
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and "brainxai_jobs" in ok.text


def test_openapi_declares_bearer_and_every_response() -> None:
    schema = _app(api_token=TOKEN).get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            assert "200" in op["responses"], (method, path)
            if path not in ("/healthz", "/readyz"):
                assert "401" in op["responses"], (method, path)
            assert op["responses"]["200"].get("content"), (method, path)
