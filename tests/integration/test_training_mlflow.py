"""A tiny real training run on generated images: MLflow run, registered version, alias."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow
import pytest

from inference.bundle import load_bundle
from plugin.commands.cli import main
from tests.integration.tiny_dataset import make_class_folders
from vocabulary.identity import CLASSES, MODEL_NAME


@pytest.mark.integration
def test_tiny_training_run_is_tracked_and_registered(tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "data"
    make_class_folders(data)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BRAINXAI_DATA_DIR", str(tmp_path / "var"))
    args = ["train", "--data", str(data), "--epochs", "1", "--image-size", "32"]
    args += ["--batch-size", "8", "--val-fraction", "0.25", "--export", str(tmp_path / "m.pt")]
    args += ["--ema-decay", "0.9"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(out["run_id"])
    assert run.data.params["epochs"] == "1"
    assert "val_accuracy" in run.data.metrics
    history = client.get_metric_history(out["run_id"], "train_loss")
    assert len(history) == 1
    assert len(client.get_metric_history(out["run_id"], "ema_val_acc")) == 1  # EMA was on
    artifacts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"confusion_matrix.png", "roc.png", "val_metrics.json"} <= artifacts

    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(champion.version) == out["registered_version"]
    assert champion.tags["bundle_sha256"]
    clf = load_bundle(tmp_path / "m.pt")
    assert clf.meta.preprocess.image_size == 32
    assert clf.meta.classes == CLASSES

    # A second, worse model (forced by an impossible accuracy) must not move the alias.
    from inference.registry import log_bundle, tracking_run

    with tracking_run(uri, "worse"):
        reg = log_bundle(tmp_path / "m.pt", val_accuracy=-0.5)
    assert not reg.is_champion
    again = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert again.version == champion.version

    # The registered model loads back through a models:/ URI.
    from inference.registry import resolve_model

    path = resolve_model(f"models:/{MODEL_NAME}@champion", uri)
    assert load_bundle(path).meta.preprocess.image_size == 32


def test_training_starts_from_init_weights(tmp_path: Path) -> None:
    """--init-from: the run starts from the given bundle's weights, not a fresh init."""
    import torch

    from inference.bundle import BundleMeta, save_bundle
    from inference.model import build_network
    from inference.training import TrainOptions, train

    data = tmp_path / "data"
    make_class_folders(data, per_class=6)
    torch.manual_seed(123)
    start = build_network(len(CLASSES))
    save_bundle(tmp_path / "start.pt", start, BundleMeta(), None)
    opts = TrainOptions(data_dir=data, work_dir=tmp_path / "work", epochs=1, image_size=32)
    opts = dataclasses.replace(opts, batch_size=8, lr=1e-12, val_fraction=0.25, progress=False)
    fresh = load_bundle(train(opts).bundle_path).net.state_dict()
    tuned_opts = dataclasses.replace(
        opts, init_from=tmp_path / "start.pt", work_dir=tmp_path / "work2"
    )
    tuned = load_bundle(train(tuned_opts).bundle_path).net.state_dict()
    key = next(k for k, v in start.state_dict().items() if v.ndim == 4)  # first conv kernel
    want = start.state_dict()[key].half().float()
    assert torch.allclose(tuned[key].float(), want, atol=1e-3)
    assert not torch.allclose(fresh[key].float(), want, atol=1e-3)
