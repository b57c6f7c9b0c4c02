"""docker-compose.yml and the Dockerfile (no Docker engine here: check their content)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from plugin.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_have_healthchecks() -> None:
    services = _compose()["services"]
    assert set(services) == {"orthanc", "brainxai", "mlflow", "rabbitmq", "postgres", "worker"}
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
        if name not in ("rabbitmq", "postgres"):
            assert "urlopen" in test[-1], name
    assert services["orthanc"]["image"].startswith("orthancteam/orthanc:")
    deps = services["brainxai"]["depends_on"]
    assert {k: v["condition"] for k, v in deps.items()} == {
        "orthanc": "service_healthy",
        "mlflow": "service_healthy",
        "rabbitmq": "service_healthy",
        "postgres": "service_healthy",
    }
    assert deps["rabbitmq"]["required"] is False and deps["postgres"]["required"] is False


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
              if k.startswith("BRAINXAI_") and "${" not in v}  # fmt: skip
    values["allowed_calling_aets"] = json.loads(values["allowed_calling_aets"])
    settings = Settings(**values)
    assert settings.orthanc_dicom_host == "orthanc"
    assert settings.allowed_calling_aets == ["ORTHANC"]


def test_dockerfile_uses_cpu_torch() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.startswith("# ") and "FROM python:3.11-slim" in text
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text
    assert "HEALTHCHECK" in text and '"brainxai", "serve"' in text


_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::([?-])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error} (raises)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name, "")
        if op == "?" and not value:
            raise ValueError(f"{name}: {arg}")
        return value or (arg if op == "-" else "")

    return _VAR.sub(one, text)


SECRETS = {"BRAINXAI_API_TOKEN": "t0ken", "ORTHANC_PASSWORD": "pw1",
           "RABBITMQ_PASSWORD": "pw2", "POSTGRES_PASSWORD": "pw3"}  # fmt: skip


def test_compose_refuses_to_start_without_each_secret() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    assert "change-me" not in text
    yaml.safe_load(interpolate(text, SECRETS))  # all set: a valid file
    for missing in SECRETS:
        env = {k: v for k, v in SECRETS.items() if k != missing}
        with pytest.raises(ValueError, match=missing):
            interpolate(text, env)
    orthanc = yaml.safe_load(interpolate(text, SECRETS))["services"]["orthanc"]["environment"]
    assert orthanc["ORTHANC__AUTHENTICATION_ENABLED"] == "true"
    assert json.loads(orthanc["ORTHANC__REGISTERED_USERS"]) == {"brainxai": "pw1"}


def test_images_are_pinned() -> None:
    for name, service in _compose()["services"].items():
        image = service["image"]
        if "build" in service:
            assert image.startswith("brainxai:"), name  # built here from the Dockerfile
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and re.fullmatch(r"\d+\.\d+(\.\d+)?(-alpine)?", tag), (name, image)


def test_distributed_profile_scales_workers() -> None:
    services = yaml.safe_load(interpolate((REPO / "docker-compose.yml").read_text(), SECRETS))[
        "services"
    ]
    for name in ("rabbitmq", "postgres", "worker"):
        assert services[name]["profiles"] == ["distributed"], name
    for name in ("orthanc", "brainxai", "mlflow"):
        assert "profiles" not in services[name], name  # the embedded default
    worker = services["worker"]
    assert worker["command"][:2] == ["brainxai", "worker"]
    assert "ports" not in worker and "container_name" not in worker  # --scale worker=N
    assert worker["restart"] == "unless-stopped"
    assert {k: v["condition"] for k, v in worker["depends_on"].items()} == {
        "orthanc": "service_healthy", "rabbitmq": "service_healthy",
        "postgres": "service_healthy",
    }  # fmt: skip
    values = {k.removeprefix("BRAINXAI_").lower(): v for k, v in worker["environment"].items()
              if k.startswith("BRAINXAI_")}  # fmt: skip
    settings = Settings(**values)
    assert settings.mode == "distributed"
    assert settings.broker_url == "amqp://brainxai:pw2@rabbitmq:5672//"
    assert settings.database_url == "postgresql://brainxai:pw3@postgres:5432/brainxai"
    assert settings.orthanc_password == "pw1"
    assert "9101" in worker["expose"] and "9101/healthz" in worker["healthcheck"]["test"][-1]
    node = services["brainxai"]["environment"]
    assert node["BRAINXAI_MODE"] == "embedded"  # unless BRAINXAI_MODE=distributed is set
