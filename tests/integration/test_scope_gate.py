"""The single-image out-of-scope gate with the bundled model, on real slices.

It must reject a skull-base slice, a non-brain image and one of our own Secondary Capture
overlays, and accept a mid-brain slice through a glioma.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dicom_io.reader import read_paths
from explain.rendering import overlay
from inference.bundle import Classifier, load_bundle
from inference.preprocessing import preprocess
from inference.scope_gate import colour_share, out_of_scope_reason
from tests.conftest import BUNDLED_MODEL, shared

MODEL = Path(os.environ.get("BRAINXAI_TEST_MODEL", BUNDLED_MODEL))

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clf() -> Classifier:
    if not MODEL.is_file():
        pytest.skip("bundled model missing")
    return load_bundle(MODEL)


def _reason(clf: Classifier, raw: np.ndarray) -> str | None:
    prepared = preprocess(raw, clf.meta.preprocess)
    pred = clf.predict(prepared.image[None])
    return out_of_scope_reason(raw, prepared, pred, 0, clf)


def _series(name: str) -> list[np.ndarray]:
    series = read_paths([shared("dicom", name)]).series
    longest = max(series, key=lambda s: len(s.slices))
    return [s.pixels for s in longest.slices]


def test_bundled_model_has_a_scope_detector(clf: Classifier) -> None:
    assert clf.scope is not None
    assert 0.0 < clf.scope.threshold < 1.0


def test_mid_brain_glioma_slice_is_in_scope(clf: Classifier) -> None:
    slices = _series("pgbm-001-t1post")  # 24 axial slices, enhancing tumour at 14-18
    assert _reason(clf, slices[16]) is None


def test_skull_base_slice_is_out_of_scope(clf: Classifier) -> None:
    slices = _series("normal-t1w-axial")  # whole head, inferior first
    heads = [preprocess(s, clf.meta.preprocess).head_fraction for s in slices]
    first = next(i for i, h in enumerate(heads) if h >= 0.5 * max(heads))
    skull_base = first + 4  # the posterior fossa / skull base, well inside the head
    why = _reason(clf, slices[skull_base])
    assert why is not None


def test_non_brain_image_is_out_of_scope(clf: Classifier) -> None:
    yy, xx = np.mgrid[0:256, 0:256]
    checker = (((yy // 32) + (xx // 32)) % 2).astype(np.float32) * 200 + 20
    assert _reason(clf, checker) is not None


def test_our_own_overlay_is_out_of_scope(clf: Classifier, tmp_path: Path) -> None:
    grey = _series("pgbm-001-t1post")[16]
    g = (grey - grey.min()) / max(float(np.ptp(grey)), 1e-6)
    heat = np.zeros_like(g)
    heat[100:180, 80:160] = 1.0
    rgb = overlay(g, heat)
    assert colour_share(rgb) > 0.02
    why = _reason(clf, rgb)
    assert why is not None and "colour" in why
