"""brainxai sae-train on a tiny generated dataset and a tiny DenseNet169 bundle: the SAE file,
sae-report.json, montages, the MLflow artifact, and the ``sae`` method through
``brainxai explain`` with that SAE (and a clear error without one)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import torch
from PIL import Image

from explain.sparse_autoencoder import load_sae
from inference.bundle import BundleMeta, save_bundle
from inference.model import build_network
from inference.preprocessing import PreprocessConfig
from plugin.commands.cli import main
from tests.integration.tiny_dataset import make_class_folders
from vocabulary.identity import CLASSES, MODEL_NAME


def _tiny_bundle(path: Path) -> None:
    torch.manual_seed(0)
    meta = BundleMeta(version="7", preprocess=PreprocessConfig(image_size=64))
    save_bundle(path, build_network(), meta, None)


def test_sae_train_writes_sae_report_montages_and_mlflow_artifact(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    data, model = tmp_path / "data", tmp_path / "m.pt"
    make_class_folders(data)
    _tiny_bundle(model)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BRAINXAI_DATA_DIR", str(tmp_path / "var"))
    sae_file, out = tmp_path / "m.sae.pt", tmp_path / "out"
    args = ["sae-train", "--data", str(data), "--model", str(model), "--out", str(out)]
    args += ["--sae-out", str(sae_file), "--cache", str(tmp_path / "cache"), "--quiet"]
    args += ["--features", "128", "--k", "8", "--epochs", "30", "--batch-size", "32"]
    args += ["--montage-features", "3"]
    assert main(args) == 0
    assert "SAE: FVU" in capsys.readouterr().out

    report = json.loads((out / "sae-report.json").read_text())
    assert report["model"] == {"name": MODEL_NAME, "version": "7"}
    val = report["validation"]
    assert 0 <= val["reconstruction"]["fvu"] < 1.0
    assert val["reconstruction"]["l0"] <= 8 + 1e-9
    assert report["training"]["tokens"] == 4 * report["training"]["images"]  # 2 x 2 grid
    assert 0 <= report["training"]["dead_on_validation"] <= 1
    assert set(val["decision_relevant_outside_brain"]) == set(CLASSES)
    assert report["features"] and all(0 <= f["outside_share"] <= 1 for f in report["features"])
    for name, features in report["montages"].items():
        assert 1 <= len(features) <= 3
        with Image.open(out / f"sae-features-{name}.png") as im:
            assert im.size[1] == 96 * len(features)

    sae, info = load_sae(sae_file)
    assert (info.model_version, sae.n_features, sae.k) == ("7", 128, 8)
    assert report["sae_file"]["bytes"] == sae_file.stat().st_size
    client = mlflow.MlflowClient(tracking_uri=uri)
    version = report["mlflow"]["registered_version"]
    mv = client.get_model_version(MODEL_NAME, version)
    assert mv.tags["sae_artifact"] == f"sae/{sae_file.name}"
    assert float(mv.tags["sae_fvu"]) == val["reconstruction"]["fvu"]
    assert [a.path for a in client.list_artifacts(mv.run_id, "sae")] == [f"sae/{sae_file.name}"]

    # The cache makes the second run skip extraction and give the same tokens.
    assert len(list((tmp_path / "cache").glob("*-tokens.npy"))) == 2

    # The sae method through brainxai explain: with the SAE, and a clear error without.
    image = data / "glioma" / "0.jpg"
    monkeypatch.setenv("BRAINXAI_SAE", str(sae_file))
    ex = ["explain", str(image), "--model", str(model), "--methods", "gradcam,sae"]
    assert main([*ex, "--out", str(tmp_path / "ex"), "--no-curves"]) == 0
    result = json.loads((tmp_path / "ex" / "explanations.json").read_text())["results"][0]
    assert result["methods"]["sae"]["raw_min"] >= 0
    assert (tmp_path / "ex" / "0_sae_overlay.png").is_file()
    # explain-eval explains each method in its own call: sae after another method too.
    ee_out = tmp_path / "ee" / "report.json"
    ee = ["explain-eval", "--data", str(data), "--model", str(model), "--methods", "gradcam,sae",
          "--limit", "1", "--steps", "2", "--randomisation-images", "1",
          "--out", str(ee_out)]  # fmt: skip
    assert main(ee) == 0
    assert json.loads(ee_out.read_text())["methods"]["sae"]["n"] == len(CLASSES)
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    save_bundle(other, build_network(), BundleMeta(version="8", preprocess=PreprocessConfig(64)),
                None)  # fmt: skip
    wrong = ["explain", str(image), "--model", str(other), "--methods", "sae", "--no-curves"]
    assert main([*wrong, "--out", str(tmp_path / "ex3")]) == 1
    assert "not version 8" in capsys.readouterr().err
    # A bundle that only refitted the out-of-scope detector (fit-scope --version) carries
    # version 7's weights: version 7's SAE still explains it.
    torch.manual_seed(0)
    refit = tmp_path / "refit.pt"
    save_bundle(refit, build_network(), BundleMeta(version="7b", preprocess=PreprocessConfig(64),
                extra={"weights_version": "7"}), None)  # fmt: skip
    again = ["explain", str(image), "--model", str(refit), "--methods", "sae", "--no-curves"]
    assert main([*again, "--out", str(tmp_path / "ex4")]) == 0
    monkeypatch.setenv("BRAINXAI_SAE", str(tmp_path / "missing.sae.pt"))
    assert main([*ex, "--out", str(tmp_path / "ex2"), "--no-curves"]) == 1
    assert "brainxai sae-train" in capsys.readouterr().err
