"""A model bundle: fp16 weights plus everything inference needs to repeat training.

One file (torch.save of plain tensors and dicts, loaded with weights_only=True) holding the
weights, class names, preprocessing config, temperature, OOD statistics and a model card
summary. ``Classifier`` wraps a loaded bundle for batched, calibrated prediction.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from inference.calibration import softmax
from inference.model import build_network, feature_extractor, head_forward
from inference.ood import FeatureDistance
from inference.precision import bf16_fast
from inference.preprocessing import PreprocessConfig
from inference.scope import ScopeDetector
from vocabulary.errors import ModelError
from vocabulary.identity import CLASSES, MODEL_NAME

log = logging.getLogger(__name__)

BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "models" / "brainxai-densenet169.pt"


@dataclass(frozen=True)
class BundleMeta:
    name: str = MODEL_NAME
    version: str = "0"
    classes: tuple[str, ...] = CLASSES
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    temperature: float = 1.0
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    logits: NDArray[np.float32]  # (N, C)
    probs: NDArray[np.float32]  # (N, C) temperature-scaled
    features: NDArray[np.float32]  # (N, D) pooled features
    ood_score: NDArray[np.float32]  # (N,) feature distance; inf-free
    energy: NDArray[np.float32]  # (N,) -T * logsumexp(logits / T)
    in_scope: NDArray[np.float32] | None = None  # (N,) P(in scope), None without a detector


def save_bundle(
    path: Path,
    net: nn.Module,
    meta: BundleMeta,
    ood: FeatureDistance | None,
    scope: ScopeDetector | None = None,
) -> None:
    state = {k: v.detach().to(torch.float16) for k, v in net.state_dict().items()}
    payload = {
        "format": "brainxai-bundle/1",
        "state_dict": state,
        "meta": {
            "name": meta.name,
            "version": meta.version,
            "classes": list(meta.classes),
            "preprocess": meta.preprocess.to_dict(),
            "temperature": meta.temperature,
            "metrics": dict(meta.metrics),
            "extra": dict(meta.extra),
        },
        "ood": None if ood is None else {k: _to_tensor(v) for k, v in ood.to_state().items()},
        "scope": None if scope is None else {k: _to_tensor(v) for k, v in scope.to_state().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _to_tensor(v: Any) -> Any:
    return torch.from_numpy(np.asarray(v, dtype=np.float32)) if isinstance(v, np.ndarray) else v


class Classifier:
    """A loaded model ready for inference on preprocessed (N, S, S) arrays."""

    def __init__(
        self,
        net: nn.Module,
        meta: BundleMeta,
        ood: FeatureDistance | None,
        scope: ScopeDetector | None = None,
    ) -> None:
        self.net = net.eval()
        self.meta = meta
        self.ood = ood
        self.scope = scope
        for p in self.net.parameters():
            p.requires_grad_(False)

    @property
    def image_size(self) -> int:
        return self.meta.preprocess.image_size

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def weights_version(self) -> str:
        """The version whose network weights this bundle carries: its own, or the source's
        when only the out-of-scope detector was refitted (``fit-scope --version``). Artefacts
        of the weights alone (the SAE) belong to this version."""
        return str(self.meta.extra.get("weights_version", self.meta.version))

    def predict(self, images: NDArray[np.float32], batch_size: int = 32) -> Prediction:
        """Calibrated prediction: bf16 trunk, float32 head (as Grad-CAM computes it)."""
        logits, feats = [], []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = torch.from_numpy(np.asarray(images[start : start + batch_size]))[:, None]
                x = x.float().contiguous(memory_format=torch.channels_last)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_fast()):
                    fmap = torch.relu(feature_extractor(self.net)(x))
                pooled, out = head_forward(self.net, fmap.float())
                logits.append(out.float().numpy())
                feats.append(pooled.float().numpy())
        n_classes = len(self.meta.classes)
        z = np.concatenate(logits) if logits else np.zeros((0, n_classes), np.float32)
        f = np.concatenate(feats) if feats else np.zeros((0, 1), np.float32)
        return self.prediction_from(z, f)

    def prediction_from(
        self, logits: NDArray[np.float32], pooled: NDArray[np.float32]
    ) -> Prediction:
        """Calibrated probabilities, OOD score and energy from head outputs computed elsewhere
        (e.g. by Grad-CAM's forward pass, which saves a second pass through the trunk)."""
        z = np.asarray(logits, dtype=np.float32)
        f = np.asarray(pooled, dtype=np.float32)
        t = self.meta.temperature
        zt = z / t
        m = zt.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(zt - m).sum(axis=1, keepdims=True)))[:, 0]
        ood = self.ood.score(f) if self.ood is not None and len(f) else np.zeros(len(z), np.float32)
        return Prediction(
            logits=z,
            probs=softmax(z, t),
            features=f,
            ood_score=ood.astype(np.float32),
            energy=(-t * lse).astype(np.float32),
            in_scope=self.scope.probability(f) if self.scope is not None and len(f) else None,
        )


def _first_line(exc: BaseException) -> str:
    """torch's refusals run to many lines of advice; the first says what was wrong."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def load_bundle(path: Path | str | None = None) -> Classifier:
    """Load a bundle file; None means the model shipped in the repository."""
    p = Path(path) if path is not None else BUNDLED_MODEL
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"cannot read model file {p}: {_first_line(exc)}") from exc
    if not isinstance(payload, dict) or payload.get("format") != "brainxai-bundle/1":
        raise ModelError(f"{p} is not a brainxai model bundle")
    m = payload["meta"]
    meta = BundleMeta(
        name=str(m["name"]),
        version=str(m["version"]),
        classes=tuple(m["classes"]),
        preprocess=PreprocessConfig.from_dict(m["preprocess"]),
        temperature=float(m["temperature"]),
        metrics=dict(m.get("metrics", {})),
        extra=dict(m.get("extra", {})),
    )
    net = build_network(len(meta.classes))
    net.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ood = None
    if payload.get("ood") is not None:
        ood = FeatureDistance.from_state({k: _as_np(v) for k, v in payload["ood"].items()})
    scope = None
    if payload.get("scope") is not None:
        scope = ScopeDetector.from_state({k: _as_np(v) for k, v in payload["scope"].items()})
    log.info("loaded model %s version %s from %s", meta.name, meta.version, p.name)
    return Classifier(net, meta, ood, scope)


def _as_np(v: Any) -> Any:
    return v.numpy() if isinstance(v, torch.Tensor) else v


def class_names(indices: Sequence[int], classes: Sequence[str] = CLASSES) -> list[str]:
    return [classes[i] for i in indices]
