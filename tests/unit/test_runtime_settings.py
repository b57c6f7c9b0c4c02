"""The settings hand their process-wide knobs to the layers below plugin/, which read no
environment themselves (inference.runtime)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inference.precision import bf16_fast, native_bf16
from inference.runtime import Runtime, configure, current
from plugin.analysis import sae_path_for
from plugin.settings import load_settings


def test_bf16_is_forced_by_the_setting_and_detected_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRAINXAI_BF16", "1")
    assert bf16_fast() == native_bf16()  # the environment alone changes nothing here
    load_settings()
    assert bf16_fast() is True
    monkeypatch.setenv("BRAINXAI_BF16", "0")
    load_settings()
    assert bf16_fast() is False
    monkeypatch.setenv("BRAINXAI_BF16", "")  # empty: not set
    load_settings()
    assert bf16_fast() == native_bf16()
    monkeypatch.delenv("BRAINXAI_BF16")
    load_settings()
    assert bf16_fast() == native_bf16()


def test_the_sae_file_setting_names_the_sae(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    default = sae_path_for("brainxai-densenet169", "202612030130")
    assert default.name == "brainxai-densenet169-202612030130.sae.pt"
    monkeypatch.setenv("BRAINXAI_SAE", str(tmp_path / "my.sae.pt"))
    load_settings()
    assert sae_path_for("brainxai-densenet169", "202612030130") == tmp_path / "my.sae.pt"


def test_every_knob_comes_from_one_settings_object(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BRAINXAI_MLFLOW_ARTIFACT_LOCATION", "s3://bucket/mlflow")
    monkeypatch.setenv("BRAINXAI_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    settings = load_settings()
    assert current() == settings.runtime()
    assert current().mlflow_artifact_location == "s3://bucket/mlflow"
    assert current().model_cache_dir == tmp_path / "cache"
    configure(Runtime())
    assert current() == Runtime()
    file = tmp_path / "settings.yaml"
    file.write_text("bf16: false\nmodel_cache_dir: /tmp/elsewhere\n")
    load_settings(file)  # a settings file sets them too
    assert current().bf16 is False and current().model_cache_dir == Path("/tmp/elsewhere")


def test_no_layer_below_plugin_reads_brainxai_variables() -> None:
    """Only plugin.settings parses BRAINXAI_* (one settings object)."""
    root = Path(__file__).resolve().parents[2]
    readers = re.compile(r"(environ\.get|environ\[|getenv)\(?\s*[\"']BRAINXAI_")
    found = [
        f"{path.relative_to(root)}:{n}"
        for part in ("inference", "explain", "dicom_io", "vocabulary")
        for path in sorted((root / part).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if readers.search(line)
    ]
    assert found == []


def test_the_cli_reports_bad_settings_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from plugin.commands.cli import main

    monkeypatch.setenv("BRAINXAI_CONFIG", str(tmp_path / "missing.yaml"))
    assert main(["models"]) == 1
    assert "settings file" in capsys.readouterr().err
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    monkeypatch.setenv("BRAINXAI_CONFIG", str(tmp_path / "list.yaml"))
    assert main(["models"]) == 1
    assert "not a mapping" in capsys.readouterr().err
    monkeypatch.delenv("BRAINXAI_CONFIG")
    monkeypatch.setenv("BRAINXAI_BF16", "sometimes")
    assert main(["models"]) == 1
    assert "invalid settings" in capsys.readouterr().err
