"""``brainxai explain`` and ``brainxai explain-eval`` end to end on a small random bundle."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.bundle import BundleMeta, save_bundle
from inference.model import build_network
from inference.preprocessing import PreprocessConfig
from plugin.commands.cli import main
from vocabulary.identity import CLASSES

pytestmark = pytest.mark.integration

SIZE = 64


def _head_png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:120, :100]
    head = ((yy - 60) / 50.0) ** 2 + ((xx - 50) / 40.0) ** 2 < 1.0
    img = head * (0.5 + 0.3 * rng.random((120, 100)))
    img += np.exp(-((yy - 40 - 20 * rng.random()) ** 2 + (xx - 50) ** 2) / 80.0) * head
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    meta = BundleMeta(version="test", preprocess=PreprocessConfig(image_size=SIZE))
    save_bundle(path, build_network(), meta, None)
    return path


def test_explain_writes_overlays_raw_maps_and_json(bundle: Path, tmp_path: Path) -> None:
    files = []
    for k in range(2):
        files.append(tmp_path / f"slice{k}.png")
        _head_png(files[-1], k)
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            *map(str, files),
            "--methods",
            "gradcam,saliency",
            "--out",
            str(out),
            "--model",
            str(bundle),
            "--steps",
            "3",
        ]
    )
    assert code == 0
    report = json.loads((out / "explanations.json").read_text())
    assert report["model"]["version"] == "test" and report["research_use_only"] is True
    assert [r["file"] for r in report["results"]] == [str(f) for f in files]
    for row in report["results"]:
        assert row["prediction"]["class"] in CLASSES
        assert sum(row["prediction"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        for method in ("gradcam", "saliency"):
            entry = row["methods"][method]
            metrics = entry["metrics"]
            assert 0.0 <= metrics["brain_mass"] <= 1.0
            assert 0.0 <= metrics["deletion_auc"] <= 1.0
            with Image.open(out / entry["overlay_png"]) as im:
                assert im.mode == "RGB" and im.size[1] == 120 and im.size[0] > 100
            with Image.open(io.BytesIO((out / entry["raw_png16"]).read_bytes())) as im:
                assert im.mode.startswith("I;16") and im.size == (SIZE, SIZE)


def test_explain_rejects_unknown_method_and_bad_file(bundle: Path, tmp_path: Path) -> None:
    png = tmp_path / "a.png"
    _head_png(png, 0)
    assert (
        main(
            [
                "explain",
                str(png),
                "--methods",
                "lime",
                "--out",
                str(tmp_path / "o"),
                "--model",
                str(bundle),
            ]
        )
        == 1
    )
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["explain", str(bad), "--out", str(tmp_path / "o"), "--model", str(bundle)]) == 1


def test_explain_eval_report(bundle: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for k, name in enumerate(CLASSES):
        (data / name).mkdir(parents=True)
        for j in range(2):
            _head_png(data / name / f"{name}{j}.png", 10 * k + j)
    report_path = tmp_path / "eval" / "report.json"
    code = main(
        [
            "explain-eval",
            "--data",
            str(data),
            "--methods",
            "gradcam-gxi,saliency",
            "--sharpen-weight",
            "2",
            "--limit",
            "1",
            "--model",
            str(bundle),
            "--out",
            str(report_path),
            "--steps",
            "3",
            "--worst",
            "2",
            "--randomisation-images",
            "2",
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["n_images"] == len(CLASSES)
    assert report["options"]["sharpen_weight"] == 2.0
    for method in ("gradcam-gxi", "saliency"):
        s = report["methods"][method]
        for key in ("brain_mass_mean", "deletion_auc_mean", "insertion_auc_mean"):
            assert 0.0 <= s[key] <= 1.0
        assert -1.0 <= s["randomisation_rank_corr"] <= 1.0 and s["randomisation_images"] == 2
        assert set(s["per_class"]) == set(CLASSES)
        assert all(c["n"] == 1 for c in s["per_class"].values())
        assert 0.0 <= s["per_class"]["glioma"]["share_brain_mass_below_0_5"] <= 1.0
        assert len(s["worst"]) == 2
        masses = [w["brain_mass"] for w in s["worst"]]
        assert masses == sorted(masses)
        for w in s["worst"]:
            with Image.open(report_path.parent / w["png"]) as im:
                assert im.mode == "RGB"


def test_select_items_repeats_the_training_split(bundle: Path, tmp_path: Path) -> None:
    from inference.bundle import load_bundle
    from plugin.commands.explain_eval import select_items

    for k, name in enumerate(CLASSES):
        (tmp_path / name).mkdir()
        for j in range(10):
            _head_png(tmp_path / name / f"{name}{j}.png", 100 * k + j)
    clf = load_bundle(bundle)
    val = select_items(tmp_path, clf, "validation", 0, 0)
    train = select_items(tmp_path, clf, "train", 0, 0)
    assert len(val) >= len(CLASSES) and len(val) + len(train) == 10 * len(CLASSES)
    assert not {i.path for i in val} & {i.path for i in train}
    limited = select_items(tmp_path, clf, "all", 2, 0)
    assert len(limited) == 2 * len(CLASSES)
