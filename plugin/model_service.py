"""The classifier the HTTP API and the pipeline use, swappable at run time.

``ModelService.current()`` returns an immutable snapshot (classifier + where it came from);
a request keeps using its snapshot even if ``reload()`` swaps in the MLflow ``champion``
meanwhile. Loading happens outside the lock, only the swap is locked. ``infer_lock``
serialises model use, because on this 2-core machine parallel forward passes only contend.
It is a ``PriorityLock``: the worker takes it with ``infer_lock.priority()`` and goes
before every waiting API request (``with infer_lock``), so a stream of ``/v1/predict``
calls cannot starve a routed study (measured before: four heavy clients made a study take
65 s instead of 6 s); a study waits at most for the one request in progress.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.bundle import Classifier, load_bundle
from inference.registry import CHAMPION, alias_version, file_sha256, list_versions, resolve_model
from inference.storage import is_remote
from plugin.settings import Settings
from vocabulary.errors import ModelError
from vocabulary.identity import MODEL_NAME

log = logging.getLogger(__name__)


class PriorityLock:
    """A non-reentrant lock whose high-priority waiters go before every normal waiter.

    ``with lock:`` takes it at normal priority (API requests); ``with lock.priority():`` at
    high priority (the worker). Normal waiters also yield while a high one is waiting.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._high_waiting = 0
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """How many threads are waiting for the lock."""
        return self._waiting

    def acquire(self, high: bool = False) -> None:
        with self._cond:
            self._waiting += 1
            if high:
                self._high_waiting += 1
            try:
                while self._held or (not high and self._high_waiting):
                    self._cond.wait()
            finally:
                self._waiting -= 1
                if high:
                    self._high_waiting -= 1
                    self._cond.notify_all()  # normal waiters may go if no other high one
            self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def locked(self) -> bool:
        return self._held

    def __enter__(self) -> PriorityLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @contextmanager
    def priority(self) -> Iterator[None]:
        self.acquire(high=True)
        try:
            yield
        finally:
            self.release()


@dataclass(frozen=True)
class ModelOrigin:
    name: str
    version: str  # bundle version (training timestamp)
    registry_version: str | None  # MLflow registered version, when loaded from the registry
    source: str  # "bundled", a file name, or a models:/, s3:// or gs:// URI
    sha256: str


@dataclass(frozen=True)
class LoadedModel:
    classifier: Classifier
    origin: ModelOrigin


@dataclass(frozen=True)
class RegistryListing:
    versions: list[dict[str, Any]]
    error: str | None


def _mlflow_errors() -> tuple[type[BaseException], ...]:
    from mlflow.exceptions import MlflowException

    return (MlflowException, OSError)


class ModelService:
    """Holds the current classifier; thread-safe reload from the MLflow registry."""

    def __init__(self, model_ref: str | None, tracking_uri: str) -> None:
        self._ref = model_ref
        self._tracking_uri = tracking_uri
        self._current: LoadedModel | None = None
        self._swap = threading.Lock()
        self._reloading = threading.Lock()
        self.infer_lock = PriorityLock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelService:
        return cls(settings.model, settings.tracking_uri())

    @classmethod
    def from_classifier(cls, clf: Classifier, source: str, tracking_uri: str) -> ModelService:
        """A service around an already loaded classifier (tests, the pipeline's own model)."""
        svc = cls(None, tracking_uri)
        origin = ModelOrigin(clf.meta.name, clf.version, None, source, "")
        svc._set(LoadedModel(clf, origin))
        return svc

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def load_initial(self) -> LoadedModel:
        """Load the configured model (settings.model; None = the bundled one)."""
        model = self._load(self._ref)
        self._set(model)
        return model

    def identity(self) -> tuple[str, str] | None:
        """(model name, bundle version) of the current model, None before one is loaded."""
        model = self._current
        return None if model is None else (model.origin.name, model.origin.version)

    def current(self) -> LoadedModel:
        model = self._current
        if model is None:
            raise ModelError("no model loaded")
        return model

    def reload(self, alias: str = CHAMPION) -> tuple[LoadedModel | None, LoadedModel]:
        """Switch to the version the registry alias points at now; (previous, current)."""
        if not self._reloading.acquire(blocking=False):
            raise ModelError("a reload is already in progress")
        try:
            version = alias_version(self._tracking_uri, alias)
            model = self._load(f"models:/{MODEL_NAME}/{version}", registry_version=version)
            previous = self._current
            self._set(model)
            log.info("model reloaded: %s version %s (registry %s)", model.origin.name,
                     model.origin.version, version)  # fmt: skip
            return previous, model
        finally:
            self._reloading.release()

    def list_registered(self) -> RegistryListing:
        """Registered versions of brainxai-densenet169 (newest first), or why not."""
        try:
            rows = list_versions(self._tracking_uri)
        except _mlflow_errors() as exc:
            log.warning("cannot list registered models: %s", exc)
            return RegistryListing([], f"model registry unavailable: {type(exc).__name__}")
        return RegistryListing(rows, None)

    def _load(self, ref: str | None, registry_version: str | None = None) -> LoadedModel:
        try:
            path = resolve_model(ref, self._tracking_uri)
        except _mlflow_errors() as exc:
            raise ModelError(f"cannot resolve model {ref}: {exc}") from exc
        clf = load_bundle(path)
        source = "bundled" if ref in (None, "", "bundled") else _describe(ref)
        origin = ModelOrigin(clf.meta.name, clf.version, registry_version, source,
                             file_sha256(path))  # fmt: skip
        return LoadedModel(clf, origin)

    def _set(self, model: LoadedModel) -> None:
        with self._swap:
            self._current = model


def _describe(ref: str) -> str:
    """A models:/, s3:// or gs:// URI as is; a file path as its name only (no directory
    layout leaks)."""
    return ref if ref.startswith("models:/") or is_remote(ref) else Path(ref).name
