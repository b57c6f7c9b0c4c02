"""The bundled model: loads, classifies shared images correctly, predict/evaluate CLIs work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.bundle import load_bundle
from inference.dataset import duplicate_aware_split, list_images, load_image
from inference.preprocessing import preprocess
from plugin.commands.cli import main
from tests.conftest import shared
from vocabulary.identity import CLASSES


def _sample(n_per_class: int) -> list[tuple[Path, int]]:
    items = list_images(shared("brain-tumor-mri", "Training"))
    out: list[tuple[Path, int]] = []
    for label in range(len(CLASSES)):
        of_class = [i for i in items if i.label == label]
        step = max(1, len(of_class) // n_per_class)
        out += [(i.path, label) for i in of_class[::step][:n_per_class]]
    return out


def test_bundled_model_classifies_shared_images(bundled_model: Path) -> None:
    clf = load_bundle(bundled_model)
    assert clf.meta.classes == CLASSES
    assert bundled_model.stat().st_size < 30 * 1024 * 1024
    sample = _sample(10)
    images = np.stack([preprocess(load_image(p), clf.meta.preprocess).image for p, _ in sample])
    probs = clf.predict(images).probs
    acc = float((probs.argmax(1) == np.array([lab for _, lab in sample])).mean())
    # Random weights give ~25 %; the trained model is ~99 % on its training folder.
    assert acc >= 0.9, acc
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_evaluate_cli_writes_metrics(bundled_model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = tmp_path / "data"
    for path, label in _sample(3):
        dest = data / CLASSES[label] / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    out = tmp_path / "metrics.json"
    assert (
        main(["evaluate", "--data", str(data), "--out", str(out), "--model", str(bundled_model)])
        == 0
    )
    m = json.loads(out.read_text())
    for key in (
        "classes",
        "n",
        "accuracy",
        "macro_f1",
        "per_class",
        "confusion_matrix",
        "macro_auc",
        "ece",
    ):
        assert key in m
    assert m["n"] == 12 and len(m["predictions"]) == 12
    p = m["predictions"][0]
    assert set(p) >= {"path", "label", "pred", "probs"} and not Path(p["path"]).is_absolute()
    assert sum(sum(r) for r in m["confusion_matrix"]) == 12


def test_predict_cli_refuses_unknown_files(bundled_model: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image at all")
    good = _sample(1)[0][0]
    rc = main(["predict", "--json", "--model", str(bundled_model), str(good), str(bad)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["results"][0]["class"] in CLASSES
    assert "unsupported file type" in out["results"][1]["error"]


@pytest.mark.parametrize("name", ["pgbm-001-t1post"])
def test_predict_cli_reads_dicom(bundled_model: Path, name: str, capsys) -> None:
    folder = shared("dicom", name)
    first = sorted(folder.iterdir())[12]
    assert main(["predict", "--json", "--model", str(bundled_model), str(first)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["results"][0]["class"] in CLASSES


def test_evaluate_cli_validation_split_is_trainings(bundled_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for path, label in _sample(6):
        dest = data / CLASSES[label] / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    seen: dict[str, set[str]] = {}
    for side in ("train", "validation"):
        out = tmp_path / f"{side}.json"
        args = ["evaluate", "--data", str(data), "--out", str(out), "--model", str(bundled_model)]
        assert main([*args, "--split", side, "--val-fraction", "0.34", "--seed", "1"]) == 0
        m = json.loads(out.read_text())
        assert m["split"] == side
        seen[side] = {p["path"] for p in m["predictions"]}
    expected = duplicate_aware_split(list_images(data), 0.34, 1)
    assert seen["validation"] == {str(i.path.relative_to(data)) for i in expected.validation}
    assert seen["validation"] and seen["train"] and not seen["validation"] & seen["train"]
    assert len(seen["validation"]) + len(seen["train"]) == 24
