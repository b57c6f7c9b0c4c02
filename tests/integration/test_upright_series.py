"""A series stored upside down (geometry saying so, as a prone acquisition or a reformat
writes it) is analysed as the upright one: same inputs, same decision, maps on its own grid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_io.reader import read_paths
from dicom_io.series_selection import SelectionRules
from inference.bundle import load_bundle
from plugin.pipeline import PipelineOptions, analyze_series
from tests.conftest import BUNDLED_MODEL, shared

MODEL = Path(os.environ.get("BRAINXAI_TEST_MODEL", BUNDLED_MODEL))

pytestmark = pytest.mark.integration


def _upside_down(src: Path, dst: Path) -> None:
    """Every slice's rows reversed, with ImageOrientationPatient's column cosines and
    ImagePositionPatient (the first pixel's place, PS3.3 C.7.6.2.1.1) changed to match."""
    dst.mkdir()
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ori = [float(v) for v in ds.ImageOrientationPatient]
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
        rows_mm = float(ds.PixelSpacing[0]) * (int(ds.Rows) - 1)
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp + np.asarray(ori[3:]) * rows_mm]
        ds.ImageOrientationPatient = [f"{v:.8g}" for v in ori[:3] + [-v for v in ori[3:]]]
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[::-1]).tobytes()
        ds.save_as(dst / f.name)


def test_upside_down_series_is_analysed_upright(tmp_path: Path) -> None:
    if not MODEL.is_file():
        pytest.skip("bundled model missing")
    src = shared("dicom", "pgbm-001-t1post")
    _upside_down(src, tmp_path / "flipped")
    (upright,) = read_paths([src]).series
    (flipped,) = read_paths([tmp_path / "flipped"]).series
    assert flipped.upright_turns == (False, True, False)
    clf = load_bundle(MODEL)
    opts = PipelineOptions(methods=("gradcam",))
    a = analyze_series(upright, clf, SelectionRules(), opts)
    b = analyze_series(flipped, clf, SelectionRules(), opts)
    assert a.prediction is not None and b.prediction is not None
    assert a.decision is not None and b.decision is not None
    assert np.allclose(a.prediction.probs, b.prediction.probs, atol=1e-5)
    assert (a.decision.label, a.decision.reason) == (b.decision.label, b.decision.reason)
    i = int(np.argmax(a.prediction.probs.max(axis=1)))
    map_a = a.prepared[i].to_source(a.maps["gradcam"][i])
    map_b = b.prepared[i].to_source(b.maps["gradcam"][i])
    assert map_b.shape == flipped.slices[i].pixels.shape
    assert np.allclose(map_b[::-1], map_a, atol=1e-5)
