"""Single images abstain: out-of-scope uploads to /v1/predict get no class, with the reason.

Our own result objects (a Secondary Capture overlay and a Parametric Map written by
dicom_io's real writers from a shared MR series), a colour overlay PNG and a mid-brain
glioma slice (PGBM-001, T1 post-contrast) go through the real app and the real model.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from api_support import AUTH, SHARED_DATA, make_app, model_path
from fastapi.testclient import TestClient
from PIL import Image

from dicom_io.context import ResultContext
from dicom_io.files import overlay_pixels, write_datasets
from dicom_io.parametric_map import build_parametric_map
from dicom_io.reader import read_paths
from dicom_io.secondary_capture import build_overlays
from explain.rendering import add_text, overlay
from plugin.analysis import result_text
from plugin.commands.cli import main
from vocabulary.identity import CLASSES

pytestmark = pytest.mark.integration

DICOM = SHARED_DATA / "dicom"
CTX = ResultContext(model_version="9.9.9-test")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    return TestClient(make_app(tmp_path_factory.mktemp("api")))


@pytest.fixture(scope="module")
def own_objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One SC overlay and one Parametric Map of ours, written from PGBM-001."""
    folder = DICOM / "pgbm-001-t1post"
    if not folder.is_dir():
        pytest.skip(f"shared data not available: {folder}")
    (series,) = read_paths([folder]).series
    mid = len(series) // 2
    grey = series.slices[mid].pixels.astype(np.float32)
    grey = (grey - grey.min()) / max(float(np.ptp(grey)), 1e-6)
    heat = np.zeros_like(grey)
    heat[grey.shape[0] // 3 : grey.shape[0] // 2, grey.shape[1] // 3 : grey.shape[1] // 2] = 1.0
    rgb = add_text(overlay(grey, heat), result_text(CTX.model_name, CTX.model_version, "x"))
    sc = build_overlays(series, [mid], [rgb], CTX)
    maps = np.zeros((len(series), *grey.shape), np.float32)
    maps[:, : grey.shape[0] // 2] = 0.8
    pm = build_parametric_map(series, maps, CTX)
    out = tmp_path_factory.mktemp("own")
    sc_path, pm_path = write_datasets([sc[0], pm], out)
    return {"sc": sc_path, "pm": pm_path}


def _post(client: TestClient, data: bytes) -> dict[str, object]:
    r = client.post("/v1/predict", files={"file": ("upload", data)}, headers=AUTH)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def _abstained(body: dict[str, object]) -> None:
    assert body["class"] is None
    assert isinstance(body["reason"], str) and body["reason"]
    assert body["model_output"] in CLASSES  # the raw output is kept, labelled as such
    assert str(body["sentence"]).startswith("Indeterminate: ")


def test_our_secondary_capture_gets_no_class(
    client: TestClient, own_objects: dict[str, Path]
) -> None:
    body = _post(client, own_objects["sc"].read_bytes())
    _abstained(body)
    assert "our own output" in str(body["reason"])


def test_our_parametric_map_gets_no_class(client: TestClient, own_objects: dict[str, Path]) -> None:
    body = _post(client, own_objects["pm"].read_bytes())
    _abstained(body)
    assert "own output" in str(body["reason"]) or "Parametric Map" in str(body["reason"])


def test_a_colour_overlay_png_gets_no_class(
    client: TestClient, own_objects: dict[str, Path]
) -> None:
    rgb = overlay_pixels([own_objects["sc"]])  # the SC's RGB pixels, as a user would export
    assert rgb is not None and rgb.ndim == 3
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, format="PNG")
    body = _post(client, buf.getvalue())
    _abstained(body)
    assert "colour image" in str(body["reason"])


def test_a_mid_brain_glioma_slice_keeps_its_class(client: TestClient) -> None:
    """The middle slice of TCGA-FG-6692's T1 post-contrast series (a glioma patient) is in
    scope: it gets the model's class and no reason (which class is the model's business)."""
    folder = DICOM / "tcga-fg-6692" / "13_MRHR_T1_AX_POST_GAD"
    if not folder.is_dir():
        pytest.skip(f"shared data not available: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    (series,) = read_paths(files).series
    mid = series.slices[len(series) // 2].sop_instance_uid
    (path,) = [p for p in files if read_paths([p]).series[0].slices[0].sop_instance_uid == mid]
    body = _post(client, path.read_bytes())
    assert body["reason"] is None, body["reason"]
    assert body["class"] in CLASSES and body["class"] == body["model_output"]
    assert str(body["sentence"]).startswith("Model output on a single image: ")


def test_predict_cli_gives_our_objects_no_class(
    own_objects: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``brainxai predict`` applies the same refusal as the API (one JSON row per image)."""
    model = str(model_path())
    assert main(["predict", "--json", "--model", model, str(own_objects["sc"])]) == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["class"] is None and row["trustworthy"] is False
    assert "our own output" in row["reason"] and row["model_output"] in CLASSES
    assert row["sentence"] == f"Indeterminate: {row['reason'].rstrip('.')}."
    assert main(["predict", "--model", model, str(own_objects["sc"])]) == 0
    assert "model output, not a result" in capsys.readouterr().out
