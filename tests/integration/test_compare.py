"""``brainxai compare`` on a tiny generated dataset: the table with every column, one MLflow
run and registered model per architecture, the product's registered model untouched, and
``--resume`` reusing finished architectures."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from plugin.commands.cli import main
from plugin.comparison import COLUMNS
from tests.integration.tiny_dataset import make_class_folders
from vocabulary.identity import MODEL_NAME


@pytest.mark.integration
def test_compare_tabulates_and_registers_each_architecture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    make_class_folders(data, per_class=6)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BRAINXAI_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps its artifacts in ./mlruns
    out = tmp_path / "compare"
    args = ["compare", "--data", str(data), "--out", str(out), "--quiet"]
    args += ["--architectures", "efficientnet-b0,vit,vgg16", "--image-size", "32"]
    args += ["--epochs", "1", "--batch-size", "8", "--val-fraction", "0.25"]
    args += ["--explain-images", "4", "--budget-minutes", "30"]
    assert main(args) == 0

    report = json.loads((out / "compare.json").read_text())
    rows = {r["architecture"]: r for r in report["rows"]}
    assert list(rows) == ["efficientnet-b0", "vit", "vgg16"]
    assert "not feasible" in rows["vgg16"]["not_feasible"]
    assert "32 px" in report["header"] and "from scratch" in report["header"]
    for name in ("efficientnet-b0", "vit"):
        row = rows[name]
        assert 0.0 <= row["val_accuracy"] <= 1.0
        assert 0.0 <= row["val_ece"] <= 1.0
        assert 0.0 <= row["brain_mass"] <= 1.0 and row["explained_images"] == 4
        assert row["parameters"] > 100_000 and row["weights_mb"] > 0.1
        assert row["cpu_images_per_second"] > 0 and row["epochs_done"] == 1
        assert (out / name / "weights.pt").is_file()
    assert rows["vit"]["explanation"] == "attention rollout"
    assert rows["efficientnet-b0"]["explanation"] == "gradcam"

    table = (out / "compare.md").read_text()
    lines = table.splitlines()
    assert lines[0] == report["header"]
    header_cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header_cells == [label for _, label in COLUMNS]
    body = [line for line in lines[4:] if line.startswith("| ")]
    assert len(body) == 3 and all(line.count("|") == len(COLUMNS) + 1 for line in body)
    assert "vgg16: not feasible" in table

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("brainxai-compare")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["architecture"] for r in runs) == ["efficientnet-b0", "vit"]
    for name in ("efficientnet-b0", "vit"):
        run = client.get_run(rows[name]["run_id"])
        assert run.data.metrics["val_accuracy"] == pytest.approx(rows[name]["val_accuracy"])
        assert "compare_row.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
        version = client.get_model_version(f"brainxai-compare-{name}", "1")
        assert version.run_id == run.info.run_id
    registered = {m.name for m in client.search_registered_models()}
    assert MODEL_NAME not in registered

    # --resume reuses the finished architectures: no new runs.
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert len(client.search_runs([experiment.experiment_id])) == 2
    again = json.loads((out / "compare.json").read_text())
    assert [r.get("run_id") for r in again["rows"]] == [r.get("run_id") for r in report["rows"]]
