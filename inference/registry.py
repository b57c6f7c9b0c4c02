"""MLflow tracking and model registry for brainxai bundles.

Embedded default: a local SQLite store (``sqlite:///<data_dir>/mlflow.db``);
``MLFLOW_TRACKING_URI`` points it at a server instead. Models are logged as pyfunc with the
bundle file as an artifact and registered as ``brainxai-densenet169``; the ``champion``
alias moves only when a new version beats the current champion's validation accuracy.

One place for each MLflow concern: ``tracking_run`` is the only caller of
``mlflow.set_tracking_uri`` (runs and ``log_model`` use MLflow's fluent API); everything
else talks to the store through ``registry_client(uri)``. Aliases are read here only
(``alias_version``, ``list_versions``); the plugin's model service calls these.
Bundles referenced as ``s3://``/``gs://`` come through ``inference.storage``; registered
versions are cached by their ``bundle_sha256`` tag; the setting ``mlflow_artifact_location``
(``inference.runtime``) puts a new experiment's artifacts in a bucket.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from inference.bundle import BUNDLED_MODEL, load_bundle
from inference.classification_metrics import confusion_matrix, roc_curve
from inference.runtime import current
from inference.storage import cached_content, fetch, is_remote, keep_content, storage_errors
from vocabulary.errors import ModelError
from vocabulary.identity import MODEL_NAME

log = logging.getLogger(__name__)

CHAMPION = "champion"
EXPERIMENT = "brainxai"


def _mlflow() -> Any:
    import mlflow

    return mlflow


def _mlflow_exception() -> type[Exception]:
    from mlflow.exceptions import MlflowException

    return MlflowException


def registry_client(tracking_uri: str | None = None) -> Any:
    """An MlflowClient on TRACKING_URI (tracking and registry); None = the active run's."""
    if tracking_uri is None:
        return _mlflow().MlflowClient()
    return _mlflow().MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _champion(client: Any) -> Any | None:
    """The model version the ``champion`` alias points at, or None."""
    try:
        return client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    except _mlflow_exception():
        return None


def alias_version(tracking_uri: str, alias: str = CHAMPION) -> str:
    """The registered version ALIAS points at; ModelError when there is none."""
    try:
        mv = registry_client(tracking_uri).get_model_version_by_alias(MODEL_NAME, alias)
    except (_mlflow_exception(), OSError) as exc:
        raise ModelError(f"no '{alias}' version of {MODEL_NAME} in the registry") from exc
    return str(mv.version)


class MlflowTracker:
    """The training loop's Tracker, writing to the active MLflow run."""

    def log_params(self, params: dict[str, Any]) -> None:
        _mlflow().log_params({k: str(v)[:500] for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        _mlflow().log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


@contextmanager
def tracking_run(tracking_uri: str, run_name: str, experiment: str = EXPERIMENT) -> Iterator[Any]:
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    _create_experiment(mlflow, experiment)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        yield run


def log_torch_model(net: Any, registered_name: str) -> str:
    """Log NET (any torch module) in the active run and register it as REGISTERED_NAME;
    the new version. For networks outside the product (``brainxai compare``): the product's
    registered model and its champion alias are never touched here."""
    if registered_name == MODEL_NAME:
        raise ModelError(f"{MODEL_NAME} is registered by train only")
    import mlflow.pytorch

    info = mlflow.pytorch.log_model(
        net, name="model", registered_model_name=registered_name,
        pip_requirements=["torch==2.13.0", "monai", "einops"],
        serialization_format="pickle",  # pt2 traces with torch.export, needs an example
    )  # fmt: skip
    return str(info.registered_model_version)


def _create_experiment(mlflow: Any, experiment: str = EXPERIMENT) -> None:
    """Create the experiment with its artifacts at the setting ``mlflow_artifact_location``
    (e.g. ``s3://bucket/mlflow``) when set; an existing experiment keeps the location it has."""
    location = (current().mlflow_artifact_location or "").strip()
    if not location:
        return
    existing = mlflow.get_experiment_by_name(experiment)
    if existing is None:
        mlflow.create_experiment(experiment, artifact_location=location)
    elif existing.artifact_location.rstrip("/") != location.rstrip("/"):
        log.warning("experiment %s keeps its artifact location %s (mlflow_artifact_location "
                    "%s applies to a new one)", experiment, existing.artifact_location,
                    location)  # fmt: skip


class BundlePyfunc:
    """pyfunc wrapper: preprocessed images (N, S, S) float32 -> probabilities (N, 4)."""

    def load_context(self, context: Any) -> None:
        self._clf = load_bundle(Path(context.artifacts["bundle"]))

    def predict(self, context: Any, model_input: Any, params: Any = None) -> NDArray[np.float32]:
        arr = np.asarray(model_input, dtype=np.float32)
        return self._clf.predict(arr).probs


def _pyfunc_model() -> Any:
    from mlflow.pyfunc import PythonModel

    cls = type("BrainxaiBundleModel", (BundlePyfunc, PythonModel), {})
    cls.__module__ = __name__
    return cls()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    val_accuracy: float
    is_champion: bool


def log_bundle(bundle_path: Path, val_accuracy: float) -> RegisteredVersion:
    """Log the bundle as a pyfunc model in the active run, register it, maybe promote it."""
    mlflow = _mlflow()
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    clf = load_bundle(bundle_path)
    size = clf.image_size
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, size, size), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(clf.meta.classes)), "probs")]),
    )
    sha = file_sha256(bundle_path)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=_pyfunc_model(),
        artifacts={"bundle": str(bundle_path)},
        signature=signature,
        pip_requirements=["torch==2.13.0", "monai", "numpy", "scipy", "pillow"],
        metadata={
            "classes": list(clf.meta.classes),
            "preprocess": clf.meta.preprocess.to_dict(),
            "temperature": clf.meta.temperature,
            "bundle_version": clf.version,
        },
        registered_model_name=MODEL_NAME,
    )
    version = str(info.registered_model_version)
    client = registry_client()
    client.set_model_version_tag(MODEL_NAME, version, "val_accuracy", f"{val_accuracy:.6f}")
    client.set_model_version_tag(MODEL_NAME, version, "bundle_sha256", sha)
    client.set_model_version_tag(MODEL_NAME, version, "bundle_version", clf.version)
    promoted = _maybe_promote(client, version, val_accuracy)
    return RegisteredVersion(version, val_accuracy, promoted)


def _maybe_promote(client: Any, version: str, val_accuracy: float) -> bool:
    current = _champion(client)
    best = -1.0 if current is None else float(current.tags.get("val_accuracy", "-1"))
    checked = current is not None and REAL_HARMFUL in current.tags
    if checked:
        # The champion passed the real-study check: a new version must pass it too
        # (``evaluate-studies --tag-model``, then ``models --promote``).
        log.info("version %s not promoted: the champion has a real-study check", version)
        return False
    if val_accuracy > best:
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
        log.info(
            "alias %s -> version %s (val acc %.4f > %.4f)", CHAMPION, version, val_accuracy, best
        )
        return True
    log.info("version %s not promoted (val acc %.4f <= champion %.4f)", version, val_accuracy, best)
    return False


def log_plots(labels: NDArray[np.int64], probs: NDArray[np.float32], classes: list[str]) -> None:
    """Confusion-matrix and one-vs-rest ROC plots as run artifacts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mlflow = _mlflow()
    cm = confusion_matrix(labels, probs.argmax(1), len(classes))
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    mlflow.log_figure(fig, "confusion_matrix.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    for k, name in enumerate(classes):
        fpr, tpr = roc_curve(probs[:, k], labels == k)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=0.5)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend()
    mlflow.log_figure(fig, "roc.png")
    plt.close(fig)


REAL_RIGHT = "real_check_right"
REAL_HARMFUL = "real_check_harmful"  # wrong tumour class + tumour on a normal + missed tumour
REAL_STUDIES = "real_check_studies"


def tag_real_check(
    tracking_uri: str, bundle_path: Path, right: int, harmful: int, studies: int
) -> str:
    """Record a real-study development check on the bundle's registered version."""
    version = ensure_bundled_registered(tracking_uri, bundle_path)
    client = registry_client(tracking_uri)
    for key, value in ((REAL_RIGHT, right), (REAL_HARMFUL, harmful), (REAL_STUDIES, studies)):
        client.set_model_version_tag(MODEL_NAME, version, key, str(int(value)))
    return version


def promote_if_not_worse(tracking_uri: str, version: str) -> tuple[bool, str]:
    """Move ``champion`` to ``version`` unless it is worse than the champion on either check.

    JPEG validation accuracy must not be lower; the real-study check must exist and have
    no more harmful outcomes and no fewer right ones than the champion's (a champion
    without a real-study check counts as unchecked, not as good).
    """
    client = registry_client(tracking_uri)
    tags = dict(client.get_model_version(MODEL_NAME, version).tags)
    if REAL_HARMFUL not in tags:
        return False, f"version {version} has no real-study check (evaluate-studies --tag-model)"
    champ = _champion(client)
    if champ is not None and str(champ.version) != version:
        ct = dict(champ.tags)
        worse = _worse_than(tags, ct)
        if worse:
            return False, f"version {version} not promoted: {worse} (champion {champ.version})"
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    return True, f"alias {CHAMPION} -> version {version}"


def _worse_than(cand: dict[str, str], champ: dict[str, str]) -> str:
    """Why ``cand`` is worse than ``champ`` on either check, or ''."""
    if float(cand.get("val_accuracy", "-1")) < float(champ.get("val_accuracy", "-1")):
        return "lower JPEG validation accuracy"
    if REAL_HARMFUL in champ:
        if int(cand[REAL_HARMFUL]) > int(champ[REAL_HARMFUL]):
            return "more harmful real-study outcomes"
        if int(cand.get(REAL_RIGHT, "0")) < int(champ.get(REAL_RIGHT, "0")):
            return "fewer right real-study results"
    return ""


def ensure_bundled_registered(tracking_uri: str, bundle_path: Path = BUNDLED_MODEL) -> str:
    """Register the repository's bundled model once (matched by file hash); its version."""
    mlflow = _mlflow()
    client = registry_client(tracking_uri)
    sha = file_sha256(bundle_path)
    try:
        versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    except _mlflow_exception():
        versions = []
    for v in versions:
        if v.tags.get("bundle_sha256") == sha:
            return str(v.version)
    clf = load_bundle(bundle_path)
    acc = float(clf.meta.metrics.get("val_accuracy", 0.0))
    with tracking_run(tracking_uri, "bundled-model"):
        mlflow.log_params({"source": "bundled", "bundle_version": clf.version})
        mlflow.log_metrics({k: float(v) for k, v in clf.meta.metrics.items()})
        for step, row in enumerate(clf.meta.extra.get("history", []), start=1):
            mlflow.log_metrics({k: float(v) for k, v in row.items()}, step=step)
        reg = log_bundle(bundle_path, acc)
    return reg.version


def log_sae(tracking_uri: str, bundle_path: Path, sae_path: Path, figures: dict[str, Any]) -> str:
    """Store an SAE with its model version: the file as artifact ``sae/<name>`` of the
    registered version's run (the bundle is registered first if it is not yet), its
    numeric figures as version tags ``sae_<figure>``. Returns the registered version."""
    version = ensure_bundled_registered(tracking_uri, bundle_path)
    client = registry_client(tracking_uri)
    mv = client.get_model_version(MODEL_NAME, version)
    client.log_artifact(mv.run_id, str(sae_path), artifact_path="sae")
    client.set_model_version_tag(MODEL_NAME, version, "sae_artifact", f"sae/{sae_path.name}")
    for key, value in figures.items():
        if isinstance(value, int | float):
            client.set_model_version_tag(MODEL_NAME, version, f"sae_{key}", str(value))
    return version


def resolve_model(ref: str | None, tracking_uri: str | None = None) -> Path:
    """A bundle file for REF: a file path, an ``s3://``/``gs://`` URI (downloaded once into
    the model cache), a ``models:/`` URI, or None for the bundled model."""
    if ref is None or ref in ("", "bundled"):
        return BUNDLED_MODEL
    if is_remote(ref):
        return fetch(ref)
    if not ref.startswith("models:/"):
        p = Path(ref)
        if not p.is_file():
            raise ModelError(f"model file not found: {ref}")
        return p
    import mlflow.artifacts

    sha = _registered_sha256(ref, tracking_uri)
    cached = cached_content(sha) if sha else None
    if cached is not None and cached.is_file() and file_sha256(cached) == sha:
        log.info("model %s: cached copy (sha256 %s)", ref, cached.stem[:12])
        return cached
    dest = Path(tempfile.mkdtemp(prefix="brainxai-model-"))
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=ref, dst_path=str(dest), tracking_uri=tracking_uri,
            registry_uri=tracking_uri,
        )  # fmt: skip
    except _download_errors() as exc:
        raise ModelError(f"cannot resolve {ref}: {type(exc).__name__}: {exc}") from exc
    found = sorted(Path(local).rglob("*.pt"))
    if not found:
        raise ModelError(f"{ref} holds no brainxai bundle")
    if sha and file_sha256(found[0]) == sha:
        kept = keep_content(found[0], sha)
        shutil.rmtree(dest, ignore_errors=True)
        return kept
    return found[0]


def _download_errors() -> tuple[type[BaseException], ...]:
    """MLflow's errors and its artifact stores' (boto3 for s3://, google-auth for gs://)."""
    return (_mlflow_exception(), *storage_errors())


def _registered_sha256(ref: str, tracking_uri: str | None) -> str | None:
    """The bundle_sha256 tag of the registered version REF names (models:/NAME/N or
    models:/NAME@ALIAS), the key of the local cache; None when unknown."""
    m = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([\w.-]+))", ref)
    if m is None:
        return None
    client = registry_client(tracking_uri)
    try:
        if m.group(2):
            mv = client.get_model_version(m.group(1), m.group(2))
        else:
            mv = client.get_model_version_by_alias(m.group(1), m.group(3))
    except _download_errors():
        return None  # the download below reports what is wrong
    sha = mv.tags.get("bundle_sha256")
    return str(sha) if sha else None


def list_versions(tracking_uri: str) -> list[dict[str, Any]]:
    """Registered versions with their tags and aliases (newest first)."""
    client = registry_client(tracking_uri)
    try:
        versions = client.search_model_versions(f"name='{MODEL_NAME}'")
        aliases = dict(client.get_registered_model(MODEL_NAME).aliases or {})
    except _mlflow_exception():
        return []
    rows = [
        {
            "version": str(v.version),
            "aliases": sorted(a for a, ver in aliases.items() if str(ver) == str(v.version)),
            "tags": dict(v.tags),
            "source": v.source,
        }
        for v in versions
    ]
    return sorted(rows, key=lambda r: -int(r["version"]))


def load_model(ref: str | None, tracking_uri: str | None = None, register: bool = True) -> Any:
    """Load a Classifier for REF; the bundled model is registered in MLflow on first use."""
    path = resolve_model(ref, tracking_uri)
    if ref in (None, "", "bundled") and register and tracking_uri:
        try:
            ensure_bundled_registered(tracking_uri, path)
        except (_mlflow_exception(), OSError) as exc:
            log.warning("bundled model not registered in MLflow: %s", exc)
    return load_bundle(path)
