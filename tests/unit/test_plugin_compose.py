"""docker-compose.yml and the Dockerfile (no Docker engine here: check their content)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from plugin.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_have_healthchecks() -> None:
    services = _compose()["services"]
    assert set(services) == {"orthanc", "brainxai", "mlflow"}
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and "urlopen" in test[-1], name
    assert services["orthanc"]["image"].startswith("orthancteam/orthanc:")
    deps = services["brainxai"]["depends_on"]
    assert {k: v["condition"] for k, v in deps.items()} == {
        "orthanc": "service_healthy",
        "mlflow": "service_healthy",
    }


def test_orthanc_service_matches_the_local_config() -> None:
    env = _compose()["services"]["orthanc"]["environment"]
    local = json.loads((REPO / "orthanc" / "orthanc.json").read_text())
    modality = json.loads(env["ORTHANC__DICOM_MODALITIES"])["brainxai"]
    assert modality["AET"] == local["DicomModalities"]["brainxai"]["AET"] == Settings().ae_title
    assert modality["Port"] == Settings().dicom_port
    assert env["ORTHANC__OVERWRITE_INSTANCES"] == "true" and local["OverwriteInstances"] is True
    assert json.loads(env["ORTHANC__USER_METADATA"]) == local["UserMetadata"]
    assert env["DICOM_WEB_PLUGIN_ENABLED"] == "true"
    assert env["TCP_NODELAY"] == "1"
    (script,) = json.loads(env["ORTHANC__LUA_SCRIPTS"])
    mounts = _compose()["services"]["orthanc"]["volumes"]
    assert f"./orthanc/autorouting.lua:{script}:ro" in mounts


def test_brainxai_settings_in_compose_are_valid() -> None:
    env = _compose()["services"]["brainxai"]["environment"]
    values = {k.removeprefix("BRAINXAI_").lower(): v for k, v in env.items()
              if k.startswith("BRAINXAI_") and k != "BRAINXAI_API_TOKEN"}  # fmt: skip
    values["allowed_calling_aets"] = json.loads(values["allowed_calling_aets"])
    settings = Settings(**values)
    assert settings.orthanc_dicom_host == "orthanc"
    assert settings.allowed_calling_aets == ["ORTHANC"]


def test_dockerfile_uses_cpu_torch() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.startswith("# ") and "FROM python:3.11-slim" in text
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text
    assert "HEALTHCHECK" in text and '"brainxai", "serve"' in text
