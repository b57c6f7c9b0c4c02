"""Bundles and MLflow artifacts on a real S3-compatible server (moto in server mode, started
here on 127.0.0.1 on a free port, stopped by PID): upload, load through BRAINXAI_MODEL,
the same weights; the download cache; a missing key; an MLflow run whose artifacts live on
the server and a registered model loaded back from it. The gs:// path runs against a GCS
emulator (gcp-storage-emulator, also on 127.0.0.1), not against Google's service."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import free_port, wait_until

from inference.bundle import BundleMeta, Classifier, load_bundle, save_bundle
from inference.model import build_network
from inference.preprocessing import PreprocessConfig
from inference.registry import file_sha256, resolve_model
from plugin.commands.cli import main
from plugin.model_service import ModelService
from plugin.settings import load_settings
from tests.integration.tiny_dataset import make_class_folders
from vocabulary.errors import ModelError
from vocabulary.identity import CLASSES, MODEL_NAME

pytestmark = pytest.mark.integration
BUCKET = "brainxai-models"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free port of 127.0.0.1, with the test bucket (versioned)."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(endpoint), 30, "the moto S3 server")
        yield endpoint
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()


def _answers(endpoint: str) -> bool:
    try:
        return httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def aws_env(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Test credentials and nothing from the user's AWS setup; no instance-metadata lookups."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.setenv("BRAINXAI_MODEL_CACHE_DIR", str(tmp_path / "model-cache"))
    monkeypatch.setenv("BRAINXAI_DATA_DIR", str(tmp_path / "var"))
    s3 = _s3(s3_endpoint)
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return s3_endpoint


def _s3(endpoint: str) -> object:
    """An independent boto3 client (not brainxai's code path) to put and list objects."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)


def _bundle(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    meta = BundleMeta(version=f"seed{seed}", preprocess=PreprocessConfig(image_size=32))
    save_bundle(path, build_network(len(CLASSES)), meta, None)
    return path


def _state_hash(clf: Classifier) -> str:
    h = hashlib.sha256()
    for key, value in sorted(clf.net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _probe() -> np.ndarray:
    return np.random.default_rng(7).random((3, 32, 32), dtype=np.float32)


def test_bundle_round_trip_through_brainxai_model(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = _bundle(tmp_path / "m.pt", seed=1)
    _s3(aws_env).upload_file(str(local), BUCKET, "models/m.pt")  # type: ignore[attr-defined]
    uri = f"s3://{BUCKET}/models/m.pt"
    monkeypatch.setenv("BRAINXAI_MODEL", uri)

    model = ModelService.from_settings(load_settings()).load_initial()
    want = load_bundle(local)
    assert _state_hash(model.classifier) == _state_hash(want)
    np.testing.assert_array_equal(
        model.classifier.predict(_probe()).probs, want.predict(_probe()).probs
    )
    assert model.origin.source == uri
    assert model.origin.sha256 == file_sha256(local)

    # A restart finds the cached copy: the same file, not written again.
    cached = resolve_model(uri)
    before = cached.stat()
    again = ModelService.from_settings(load_settings()).load_initial()
    assert resolve_model(uri) == cached
    assert (cached.stat().st_ino, cached.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert again.origin.sha256 == model.origin.sha256

    # A new version of the object is downloaded: other weights.
    _s3(aws_env).upload_file(str(_bundle(tmp_path / "m2.pt", seed=2)), BUCKET, "models/m.pt")  # type: ignore[attr-defined]
    newer = ModelService.from_settings(load_settings()).load_initial()
    assert newer.classifier.version == "seed2"
    assert newer.origin.sha256 == file_sha256(tmp_path / "m2.pt") != model.origin.sha256

    # The store unreachable: the newest cached copy is used.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    offline = ModelService.from_settings(load_settings()).load_initial()
    assert offline.origin.sha256 == newer.origin.sha256


def test_missing_key_is_a_clear_error(aws_env: str, tmp_path: Path, capsys) -> None:
    uri = f"s3://{BUCKET}/models/absent.pt"
    with pytest.raises(ModelError, match=f"model not found: {uri}"):
        resolve_model(uri)
    with pytest.raises(ModelError, match="model not found: s3://no-such-bucket-here/m.pt"):
        resolve_model("s3://no-such-bucket-here/m.pt")
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    assert main(["predict", str(image), "--model", uri]) == 1
    err = capsys.readouterr().err
    assert f"brainxai: error: model not found: {uri}" in err
    assert "Traceback" not in err and "testing" not in err  # no trace, no credentials
    assert not any((tmp_path / "model-cache").rglob("*.pt"))  # nothing cached for it


def test_mlflow_artifacts_on_s3_and_registered_model_loaded_back(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """train --init-from s3:// --export s3://, the run's artifacts on the S3 server (MLflow's
    boto3 with MLFLOW_S3_ENDPOINT_URL, which brainxai's fsspec path reads too)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", aws_env)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.setenv("BRAINXAI_MLFLOW_ARTIFACT_LOCATION", f"s3://{BUCKET}/mlflow")
    start = _bundle(tmp_path / "start.pt", seed=3)
    _s3(aws_env).upload_file(str(start), BUCKET, "models/start.pt")  # type: ignore[attr-defined]
    make_class_folders(tmp_path / "data", per_class=4)
    args = ["train", "--data", str(tmp_path / "data"), "--epochs", "1", "--image-size", "32"]
    args += ["--batch-size", "8", "--val-fraction", "0.25", "--lr", "1e-12"]
    args += ["--init-from", f"s3://{BUCKET}/models/start.pt"]
    args += ["--export", f"s3://{BUCKET}/models/trained.pt"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exported"] == f"s3://{BUCKET}/models/trained.pt"

    import mlflow

    run = mlflow.MlflowClient(tracking_uri=tracking).get_run(out["run_id"])
    assert run.info.artifact_uri.startswith(f"s3://{BUCKET}/mlflow/")
    listed = _s3(aws_env).list_objects_v2(Bucket=BUCKET, Prefix="mlflow/")  # type: ignore[attr-defined]
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(k.endswith(".pt") for k in keys), keys
    assert any(k.endswith("confusion_matrix.png") for k in keys), keys

    exported = load_bundle(resolve_model(f"s3://{BUCKET}/models/trained.pt"))
    registered_path = resolve_model(f"models:/{MODEL_NAME}@champion", tracking)
    registered = load_bundle(registered_path)
    assert _state_hash(registered) == _state_hash(exported)
    np.testing.assert_array_equal(
        registered.predict(_probe()).probs, exported.predict(_probe()).probs
    )
    # --init-from came from the bucket: with lr 1e-12 the first kernel is still the start's.
    key = next(k for k, v in load_bundle(start).net.state_dict().items() if v.ndim == 4)
    assert torch.allclose(
        registered.net.state_dict()[key], load_bundle(start).net.state_dict()[key], atol=1e-3
    )
    # The registered version is cached by its bundle_sha256: a second resolve downloads nothing.
    assert registered_path.parent.name == "sha256"
    before = registered_path.stat()
    assert resolve_model(f"models:/{MODEL_NAME}@champion", tracking) == registered_path
    after = registered_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.fixture(scope="module")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A GCS emulator (gcp-storage-emulator, in memory) on a free port of 127.0.0.1."""
    port = free_port()
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    log = (tmp_path_factory.mktemp("gcs") / "gcs.log").open("wb")
    cmd = [str(exe), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"]
    proc = subprocess.Popen([*cmd, f"--default-bucket={BUCKET}"], stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _gcs_answers(endpoint), 30, "the GCS emulator")
        yield endpoint
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()


def _gcs_answers(endpoint: str) -> bool:
    try:
        return httpx.get(f"{endpoint}/storage/v1/b/{BUCKET}", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def gcs_env(gcs_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """gcsfs against the emulator, anonymous; Google's credential search stays on this machine
    (no GCE check, metadata host a closed loopback port, an empty gcloud config)."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    closed = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("GCE_METADATA_HOST", closed)
    monkeypatch.setenv("GCE_METADATA_IP", closed)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("BRAINXAI_MODEL_CACHE_DIR", str(tmp_path / "model-cache"))
    monkeypatch.setenv("BRAINXAI_DATA_DIR", str(tmp_path / "var"))
    return gcs_endpoint


@pytest.mark.slow  # ~70 s here: gcsfs's credential search before it settles on anonymous
def test_gcs_round_trip_on_an_emulator(
    gcs_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gs:// through the same fsspec path (gcsfs): upload by plain HTTP, load through
    BRAINXAI_MODEL, the same weights; export with store_file and read it back; a missing key."""
    from inference.storage import store_file

    local = _bundle(tmp_path / "g.pt", seed=4)
    upload = httpx.post(
        f"{gcs_env}/upload/storage/v1/b/{BUCKET}/o",
        params={"uploadType": "media", "name": "models/g.pt"},
        content=local.read_bytes(),
        timeout=60,
    )
    assert upload.status_code == 200, upload.text
    uri = f"gs://{BUCKET}/models/g.pt"
    monkeypatch.setenv("BRAINXAI_MODEL", uri)
    model = ModelService.from_settings(load_settings()).load_initial()
    want = load_bundle(local)
    assert _state_hash(model.classifier) == _state_hash(want)
    np.testing.assert_array_equal(
        model.classifier.predict(_probe()).probs, want.predict(_probe()).probs
    )
    assert model.origin.sha256 == file_sha256(local)

    # Upload (--export, fit-scope --out) and read back; a small file: the emulator is slow.
    small = tmp_path / "small.pt"
    small.write_bytes(np.random.default_rng(5).bytes(300_000))
    assert store_file(small, f"gs://{BUCKET}/exported/s.pt") == f"gs://{BUCKET}/exported/s.pt"
    got = httpx.get(f"{gcs_env}/download/storage/v1/b/{BUCKET}/o/exported%2Fs.pt?alt=media")
    assert got.content == small.read_bytes()
    assert resolve_model(f"gs://{BUCKET}/exported/s.pt").read_bytes() == small.read_bytes()

    with pytest.raises(ModelError, match=f"model not found: gs://{BUCKET}/models/absent.pt"):
        resolve_model(f"gs://{BUCKET}/models/absent.pt")
