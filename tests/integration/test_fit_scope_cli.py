"""``brainxai fit-scope`` end to end: the bundled model's features of real slices, a new
detector in a copy of the bundle, leave-one-patient-out and held-out figures in its
metadata, and a new version name when asked, with the network's weights untouched."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dicom_io.reader import read_paths
from inference.bundle import load_bundle
from inference.preprocessing import preprocess
from plugin.commands.cli import main
from tests.conftest import BUNDLED_MODEL, shared

MODEL = Path(os.environ.get("BRAINXAI_TEST_MODEL", BUNDLED_MODEL))

pytestmark = pytest.mark.integration


def _slices_file(path: Path, cases: tuple[str, ...], image_size: int | None = None) -> None:
    """Every third slice of a real whole-head series, dealt to ``cases`` in turn, labelled
    in scope by its place in the head as ``real-slices`` labels volume slices."""
    clf = load_bundle(MODEL)
    cfg = replace(clf.meta.preprocess, image_size=image_size or clf.meta.preprocess.image_size)
    series = max(
        read_paths([shared("dicom", "normal-t1w-axial")]).series, key=lambda s: len(s.slices)
    )
    prepared = [preprocess(s.pixels, cfg) for s in series.slices[::3]]
    n = len(prepared)
    head = np.array([p.head_fraction for p in prepared])
    rel = np.arange(n) / max(1, n - 1)
    in_scope = (head >= 0.5 * head.max()) & (rel >= 0.35) & (rel <= 0.85)
    meta = [
        {"case": cases[i % len(cases)], "plane": "axial", "seq": 0, "index": i,
         "in_scope": bool(in_scope[i])}
        for i in range(n)
    ]  # fmt: skip
    np.savez_compressed(
        path,
        images=np.stack([p.image for p in prepared]).astype(np.float16),
        labels=np.zeros(n, dtype=np.int64),
        meta=np.array(json.dumps(meta)),
        preprocess=np.array(json.dumps(cfg.to_dict())),
    )


def test_fit_scope_records_held_out_figures_and_a_new_version(tmp_path: Path) -> None:
    if not MODEL.is_file():
        pytest.skip("bundled model missing")
    train, check = tmp_path / "train.npz", tmp_path / "check.npz"
    _slices_file(train, ("a", "b", "c"))
    _slices_file(check, ("held",))
    out = tmp_path / "bundle.pt"
    argv = ["fit-scope", "--model", str(MODEL), "--real-slices", str(train),
            "--check-slices", str(check), "--components", "8", "--version", "test-scope-1",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    source, fitted = load_bundle(MODEL), load_bundle(out)
    assert fitted.version == "test-scope-1"
    report = fitted.meta.extra["scope"]
    assert fitted.weights_version == source.weights_version != fitted.version
    assert report["options"]["n_components"] == 8
    assert report["leave_one_patient_out"]["patients"] == 3
    assert report["check"]["patients"] == ["held"]
    for key in ("in_scope_kept", "out_of_scope_rejected"):
        assert 0.0 <= report["leave_one_patient_out"][key] <= 1.0
    assert fitted.scope is not None and 0.0 < fitted.scope.threshold < 1.0
    assert fitted.scope.components.shape[1] == 8
    # Only the detector changed: same network, same OOD statistics.
    a, b = source.net.state_dict(), fitted.net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert source.ood is not None and fitted.ood is not None
    assert source.ood.threshold == fitted.ood.threshold


def test_fit_scope_refuses_slices_preprocessed_otherwise(tmp_path: Path, capsys) -> None:
    if not MODEL.is_file():
        pytest.skip("bundled model missing")
    other = tmp_path / "other.npz"
    _slices_file(other, ("a", "b"), image_size=128)
    out = tmp_path / "bundle.pt"
    argv = ["fit-scope", "--model", str(MODEL), "--real-slices", str(other), "--out", str(out)]
    assert main(argv) == 1
    assert "image_size=128" in capsys.readouterr().err
    assert not out.exists()
