"""POST /v1/predict end to end (in-process ASGI client, real model, real files)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from api_support import (
    AUTH,
    SHARED_DATA,
    classifier,
    make_app,
    phantom_png,
    sample_jpeg,
)
from fastapi.testclient import TestClient
from PIL import Image

from inference.preprocessing import preprocess
from plugin.api.predict import DEFAULT_METHODS
from plugin.api.schemas import DISCLAIMER
from plugin.settings import load_settings
from vocabulary.explanation_checks import failed_checks
from vocabulary.identity import CLASSES


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    app = make_app(tmp_path_factory.mktemp("api"), max_upload_bytes=2_000_000)
    return TestClient(app)


def _png(data_url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    im = Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix) :])))
    im.load()
    return im


def test_jpeg_prediction_matches_direct_model_call(client: TestClient) -> None:
    path = sample_jpeg()
    r = client.post("/v1/predict", files={"file": ("x.bin", path.read_bytes())}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    clf = classifier()
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    pre = preprocess(pixels, clf.meta.preprocess)
    expected = clf.predict(pre.image[None]).probs[0]
    assert body["class"] == CLASSES[int(expected.argmax())]
    got = np.array([body["probabilities"][c] for c in CLASSES])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert body["source"]["kind"] == "jpeg"  # sniffed, although the name says .bin
    assert body["disclaimer"] == DISCLAIMER and body["research_use_only"] is True
    assert body["model"]["version"] == clf.version


def test_png_with_two_methods_returns_aligned_images(client: TestClient) -> None:
    data = phantom_png(300, bits=16)
    r = client.post(
        "/v1/predict?methods=gradcam,saliency",
        files={"file": ("scan.dcm", data)},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["explanations"]) == {"gradcam", "saliency"}
    assert body["source"] == {
        "kind": "png", "rows": 300, "columns": 300, "frame_index": 0, "frame_count": 1,
        "series_instance_uid": None,
    }  # fmt: skip
    grey = _png(body["image_png"])
    assert grey.size == (300, 300) and grey.mode == "L"
    size = classifier().image_size
    for method, ex in body["explanations"].items():
        overlay = _png(ex["overlay_png"])
        assert overlay.size == grey.size and overlay.mode == "RGB", method
        raw = _png(ex["raw_png16"])
        assert raw.size == (size, size) and raw.mode.startswith("I"), method
        assert "brainxai:max" in raw.info
        q = ex["quality"]
        assert 0.0 <= q["brain_mass"] <= 1.0 and 0.0 < q["head_fraction"] < 1.0


def test_full_quality_adds_deletion_insertion(client: TestClient) -> None:
    r = client.post(
        "/v1/predict?quality=full", files={"file": ("a", phantom_png(128))}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    ex = r.json()["explanations"][DEFAULT_METHODS[0]]
    q = ex["quality"]
    curves = {"deletion_auc", "insertion_auc", "road_deletion_auc"}
    assert curves | {f"{k}_random" for k in curves} <= set(q)
    assert all(q[k] is not None and 0.0 <= q[k] <= 1.0 for k in curves)
    # the map's own failed checks, judged on these figures (brain mass < 0.5, curves vs random)
    assert ex["failed_checks"] == list(failed_checks(q))


def test_dicom_multi_slice_series_uses_middle_slice(client: TestClient) -> None:
    folder = SHARED_DATA / "dicom" / "pgbm-001-t1post"
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    if not files:
        pytest.skip(f"shared data not available: {folder}")
    r = client.post("/v1/predict", files={"file": ("x.png", files[0].read_bytes())}, headers=AUTH)
    assert r.status_code == 200, r.text
    src = r.json()["source"]
    assert src["kind"] == "dicom" and src["series_instance_uid"]
    assert src["frame_index"] == src["frame_count"] // 2
    # The same file without the 128-byte preamble and "DICM" (PS3.10 7.1) is still read.
    raw = files[0].read_bytes()[132:]
    r = client.post("/v1/predict", files={"file": ("y", raw)}, headers=AUTH)
    assert r.status_code == 200 and r.json()["source"]["kind"] == "dicom", r.text


def test_multiframe_dicom_transfer_syntaxes(client: TestClient) -> None:
    folder = SHARED_DATA / "dicom" / "transfer-syntaxes"
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    if not files:
        pytest.skip(f"shared data not available: {folder}")
    codes = {}
    for f in files:
        r = client.post("/v1/predict", files={"file": (f.name, f.read_bytes())}, headers=AUTH)
        codes[f.name] = r.status_code
        assert r.status_code in (200, 422), (f.name, r.text)
    assert 200 in codes.values()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 422, "invalid_input"),
        (b"hello, not an image", 415, "unsupported_media_type"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 422, "invalid_input"),  # truncated PNG
        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, 422, "invalid_input"),  # truncated JPEG
        (b"\x00" * 128 + b"DICM" + b"\x02\x00", 422, "invalid_input"),  # empty DICOM
        (b"\x08\x00\x05\x00CS\x00\x00" * 4, 415, "unsupported_media_type"),  # no SOP UIDs
    ],
)
def test_bad_uploads_get_clear_4xx(
    client: TestClient, payload: bytes, status: int, code: str
) -> None:
    r = client.post("/v1/predict", files={"file": ("img.png", payload)}, headers=AUTH)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and r.json()["detail"]


def test_tiny_image_is_refused(client: TestClient) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="PNG")
    r = client.post("/v1/predict", files={"file": ("a.png", buf.getvalue())}, headers=AUTH)
    assert r.status_code == 422 and "too small" in r.json()["detail"]


def test_unknown_method_and_missing_file(client: TestClient) -> None:
    r = client.post("/v1/predict?methods=magic", files={"file": ("a", phantom_png())}, headers=AUTH)
    assert r.status_code == 422 and "magic" in r.json()["detail"]
    r = client.post("/v1/predict", headers=AUTH)
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"


def test_size_limit(tmp_path: Path) -> None:
    small = TestClient(make_app(tmp_path, max_upload_bytes=1000))
    big = phantom_png(256)
    assert len(big) > 1000
    r = small.post("/v1/predict", files={"file": ("a.png", big)}, headers=AUTH)
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    # Far beyond the limit: refused from Content-Length before the body is read.
    huge = b"\x89PNG\r\n\x1a\n" + bytes(200_000)
    r = small.post("/v1/predict", files={"file": ("a.png", huge)}, headers=AUTH)
    assert r.status_code == 413
    # Chunked transfer (no Content-Length): counted while the body is received.
    boundary = "b0undary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()  # fmt: skip
    chunks = [head, *[bytes(16_384)] * 8, f"\r\n--{boundary}--\r\n".encode()]
    headers = {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = small.post("/v1/predict", content=iter(chunks), headers=headers)
    assert r.status_code == 413, r.text


def test_decompression_bomb_header_is_refused(client: TestClient) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    r = client.post("/v1/predict", files={"file": ("a.png", png)}, headers=AUTH)
    assert r.status_code == 413, r.text


def test_predict_requires_token(client: TestClient) -> None:
    files = {"file": ("a.png", phantom_png())}
    assert client.post("/v1/predict", files=files).status_code == 401
    bad = {"Authorization": "Bearer wrong-token-0000000000"}
    r = client.post("/v1/predict", files=files, headers=bad)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_predict_without_model_is_503(tmp_path: Path) -> None:
    c = TestClient(make_app(tmp_path, with_model=False))
    r = c.post("/v1/predict", files={"file": ("a.png", phantom_png())}, headers=AUTH)
    assert r.status_code == 503 and r.json()["code"] == "model_unavailable"


def test_sae_method_uses_the_models_sae_and_says_when_there_is_none(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """methods=sae: the bundled model's SAE (models/<name>-<version>.sae.pt) gives a map; a
    missing SAE file is a 503 naming brainxai sae-train, not a crash."""
    monkeypatch.delenv("BRAINXAI_SAE", raising=False)
    data = sample_jpeg().read_bytes()
    r = client.post("/v1/predict?methods=gradcam,sae", files={"file": ("a", data)}, headers=AUTH)
    assert r.status_code == 200, r.text
    ex = r.json()["explanations"]["sae"]
    raw = _png(ex["raw_png16"])
    assert raw.size == (classifier().image_size,) * 2
    assert 0.0 <= ex["quality"]["brain_mass"] <= 1.0
    monkeypatch.setenv("BRAINXAI_SAE", str(tmp_path / "none.sae.pt"))
    load_settings()  # settings are read at start-up: as a restarted service would
    r = client.post("/v1/predict?methods=sae", files={"file": ("a", data)}, headers=AUTH)
    assert r.status_code == 503, r.text
    assert "brainxai sae-train" in r.text
