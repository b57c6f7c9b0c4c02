"""Helpers for the HTTP API tests: the model to use, settings, an app, a live server."""

from __future__ import annotations

import functools
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from PIL import Image

from dicom_io.context import ResultContext
from dicom_io.files import write_datasets
from dicom_io.reader import read_paths
from dicom_io.secondary_capture import build_overlays
from explain.rendering import overlay
from inference.bundle import BUNDLED_MODEL, Classifier, load_bundle
from plugin.api.app import ApiContext, create_app
from plugin.job_store import JobStore
from plugin.model_service import ModelService
from plugin.settings import Settings
from tests.shared_data import SHARED_DATA
from vocabulary.sentence import study_sentence

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parents[2]


def model_path() -> Path:
    """The bundled model; BRAINXAI_TEST_MODEL may name another bundle (e.g. a dev model)."""
    if BUNDLED_MODEL.is_file():
        return BUNDLED_MODEL
    other = os.environ.get("BRAINXAI_TEST_MODEL")
    if other and Path(other).is_file():
        return Path(other)
    pytest.skip(f"no model: {BUNDLED_MODEL} missing and BRAINXAI_TEST_MODEL not set")


@functools.cache
def _classifier(path: str) -> Classifier:
    return load_bundle(path)


def classifier() -> Classifier:
    return _classifier(str(model_path()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "api_token": TOKEN,
        "orthanc_url": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    values.update(overrides)
    return Settings(**values)


def make_context(settings: Settings, with_model: bool = True) -> ApiContext:
    uri = settings.tracking_uri()
    if with_model:
        models = ModelService.from_classifier(classifier(), model_path().name, uri)
    else:
        models = ModelService(None, uri)
    path = settings.data_dir / "jobs.sqlite"
    return ApiContext(models=models, jobs=JobStore(path), jobs_path=path)


def make_app(tmp_path: Path, with_model: bool = True, **overrides: Any) -> Any:
    settings = make_settings(tmp_path, **overrides)
    return create_app(settings, make_context(settings, with_model))


def phantom_png(size: int = 256, bits: int = 8) -> bytes:
    """A synthetic axial 'head': bright ellipse, darker ventricles, one bright lesion."""
    y, x = np.mgrid[:size, :size] / size - 0.5
    img = np.where((x / 0.38) ** 2 + (y / 0.45) ** 2 < 1, 0.55, 0.0)
    img = np.where((x / 0.08) ** 2 + (y / 0.15) ** 2 < 1, 0.25, img)
    img = np.where((x - 0.15) ** 2 + (y + 0.1) ** 2 < 0.004, 1.0, img)
    scale = 65535 if bits == 16 else 255
    arr = (img * scale).astype(np.uint16 if bits == 16 else np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def sample_jpeg() -> Path:
    folder = SHARED_DATA / "brain-tumor-mri" / "Training" / "glioma"
    files = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if not files:
        pytest.skip(f"shared data not available: {folder}")
    return files[0]


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run the app with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def finished_job(store: JobStore, study_uid: str, out_dir: Path) -> Any:
    """A job in results_ready whose outputs are two real SC overlays (dicom_io's writer, from
    the shared PGBM-001 series) and whose summary is shaped as the pipeline writes it."""
    folder = SHARED_DATA / "dicom" / "pgbm-001-t1post"
    if not folder.is_dir():
        pytest.skip(f"shared data not available: {folder}")
    (series,) = read_paths([folder]).series
    indices = [len(series) // 2 - 1, len(series) // 2]
    rgbs = []
    for i in indices:
        grey = series.slices[i].pixels.astype(np.float32)
        grey = (grey - grey.min()) / max(float(np.ptp(grey)), 1e-6)
        heat = np.zeros_like(grey)
        heat[: grey.shape[0] // 2] = 1.0
        rgbs.append(overlay(grey, heat))
    sc = build_overlays(series, indices, rgbs, ResultContext(model_version="9.9.9-test"))
    paths = [str(p) for p in write_datasets(sc, out_dir)]
    job = store.touch_study(study_uid)
    store.mark_ready(study_uid, time.time(), time.time())
    job = store.start_processing(store.next_ready(time.time() + 1))
    reason = "all 1 assessed series called glioma"
    summary = {"studies": [{"study_instance_uid": study_uid,
                            "sentence": study_sentence("glioma", reason),
                            "prediction": {"class": "glioma", "reason": reason},
                            "outputs": paths}]}  # fmt: skip
    assert store.finish_processing(job, paths, summary, 1.0)
    return store.get(job.id)
