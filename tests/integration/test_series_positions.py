"""The series rule measures spans in millimetres on real series.

Its "10 mm" (the run of confident tumour slices that withholds notumor) was counted in
slices until 2026-12-04, because the pipeline gave the rule slice indices: on a 3 mm series
a 21 mm meningioma run at the head's edge (7 slices) fell short, and M025's coronal reformat
came out notumor, a missed tumour.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dicom_io.reader import read_paths
from plugin.commands.cli import main
from plugin.series_evidence import slice_positions
from tests.conftest import BUNDLED_MODEL, shared

pytestmark = pytest.mark.slow  # one 86-slice series through the whole analysis


def test_evidence_positions_are_the_series_positions_in_mm() -> None:
    series = read_paths([shared("dicom", "pgbm-001-t1post")]).series[0]
    pos = slice_positions(series)
    assert np.all(np.diff(pos) > 0)
    assert series.spacing_between_slices is not None and series.spacing_between_slices > 3
    assert np.median(np.diff(pos)) == pytest.approx(series.spacing_between_slices, abs=0.01)


def _coronal_reformat(out: Path) -> Path:
    """M025 (1 mm 3D T1 post-Gd, meningioma) cut as a coronal series 3 mm apart, by
    ``volume-to-dicom`` from its DICOM folder."""
    m025 = shared("volumes", "meningioma", "m025", "t1-dicom")
    main(["volume-to-dicom", str(m025), "--out", str(out), "--plane", "coronal", "--stride", "3",
          "--description", "T1 MPRAGE coronal", "--contrast", "GADOLINIUM"])  # fmt: skip
    series = read_paths([out]).series[0]
    assert series.plane == "coronal" and len(series) == 86
    assert series.spacing_between_slices == pytest.approx(3.0)
    return out


def test_a_meningioma_at_the_head_edge_of_a_coronal_series_is_not_called_notumor(
    tmp_path: Path,
) -> None:
    if not BUNDLED_MODEL.is_file():
        pytest.skip("bundled model missing")
    folder = _coronal_reformat(tmp_path / "m025-coronal")
    out = tmp_path / "out"
    main(["analyze", str(folder), "--out", str(out), "--model", str(BUNDLED_MODEL),
          "--methods", "gradcam"])  # fmt: skip
    study = json.loads((out / "summary.json").read_text())["studies"][0]
    label, reason = study["prediction"]["class"], study["prediction"]["reason"]
    assert label in ("meningioma", "indeterminate"), reason
    if label == "indeterminate":
        assert "notumor withheld" in reason and "meningioma" in reason
