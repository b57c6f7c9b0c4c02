"""Analyse one image or one slice stack: preprocess, classify, explain, measure, render.

The one orchestration of these steps, used by the routed pipeline and ``brainxai analyze``
(plugin.pipeline, per selected series), the HTTP API (plugin.api.predict), ``brainxai
predict`` and ``brainxai explain`` (plugin.commands). A new explanation method goes into
``explain`` (and ``explain.options.METHODS``); a new quality figure into ``explain.quality``
and ``measure_quality`` here; every caller then has it.

With a CAM method, Grad-CAM's forward pass yields the logits and pooled features, so the
prediction needs no second pass through the trunk (temperature scaling keeps the argmax, so
Grad-CAM's target is the calibrated prediction). Without one, or with a fixed target class,
the prediction comes first and the maps explain its class (or the fixed one).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dicom_io.context import BURNED_IN_DISCLAIMER
from explain.attribution import Attribution, explain
from explain.options import CAM_PASS_METHODS, ExplainOptions
from explain.quality import QualityMetrics, QualityOptions, brain_mass, quality_metrics
from explain.rendering import add_text, display_window, overlay
from explain.sae_features import sae_from_file
from inference.bundle import BUNDLED_MODEL, Classifier, Prediction
from inference.preprocessing import Preprocessed, View, preprocess, to_grey
from inference.runtime import current
from vocabulary.errors import ModelError

METHOD_LABELS = {
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "layercam": "LayerCAM",
    "gradcam-b3": "Grad-CAM (block 3)",
    "hirescam-b3": "HiResCAM (block 3)",
    "layercam-b3": "LayerCAM (block 3)",
    "smoothgrad-sq": "SmoothGrad-squared",
    "gradinput": "Gradient x input",
    "gradcam-gxi": "Grad-CAM sharpened",  # by gradient x input; fits LO with version + disclaimer
    "saliency": "Saliency",
    "smoothgrad": "SmoothGrad",
    "occlusion": "Occlusion",
    "sae": "SAE features",
}


def sae_path_for(model_name: str, version: str) -> Path:
    """The SAE file of a model version: the setting ``sae`` (BRAINXAI_SAE) when set, else
    ``models/<name>-<version>.sae.pt`` beside the bundled model (``brainxai sae-train``)."""
    return current().sae_file or BUNDLED_MODEL.parent / f"{model_name}-{version}.sae.pt"


def with_sae(clf: Classifier, methods: Sequence[str], options: ExplainOptions) -> ExplainOptions:
    """``options`` naming the model's SAE file when the ``sae`` method is asked for; an SAE
    trained for other network weights is refused (its features would mean nothing)."""
    if "sae" not in methods:
        return options
    weights = clf.weights_version
    path = options.sae_path or str(sae_path_for(clf.meta.name, weights))
    if Path(path).is_file():
        info = sae_from_file(path)[1]
        if (info.model_name, info.model_version) != (clf.meta.name, weights):
            raise ModelError(f"the SAE {path} was trained for {info.model_name} version "
                             f"{info.model_version}, not version {weights}")  # fmt: skip
    return replace(options, sae_path=path)


def prepare(
    clf: Classifier, images: Sequence[NDArray[Any]], view: View | None = None
) -> list[Preprocessed]:
    """Each image (2-D grey or RGB) through the model's training preprocessing, first
    turned by ``view`` (a DICOM series' stored orientation to the upright one)."""
    return [preprocess(image, clf.meta.preprocess, view) for image in images]


def stack(prepared: Sequence[Preprocessed]) -> NDArray[np.float32]:
    """The model inputs (N, S, S) of preprocessed images."""
    return np.stack([p.image for p in prepared]).astype(np.float32, copy=False)


def classify(clf: Classifier, prepared: Sequence[Preprocessed]) -> Prediction:
    """Calibrated prediction of preprocessed images (no explanation)."""
    return clf.predict(stack(prepared))


def classify_and_explain(
    clf: Classifier,
    images: NDArray[np.float32],
    methods: Sequence[str],
    options: ExplainOptions | None = None,
    target: int | None = None,
) -> tuple[Prediction, dict[str, Attribution]]:
    """Prediction and maps of ``images`` (N, S, S) in [0, 1] for each method.

    The maps explain each image's predicted class, or class index ``target`` for all.
    """
    options = with_sae(clf, methods, options or ExplainOptions())
    cam = next((m for m in methods if m in CAM_PASS_METHODS), None)
    if cam is not None and target is None:
        maps = explain(clf.net, images, list(methods), None, options)
        first = maps[cam]
        if first.logits is not None and first.pooled is not None:
            return clf.prediction_from(first.logits, first.pooled), maps
    pred = clf.predict(images)
    targets = pred.probs.argmax(axis=1) if target is None else np.full(len(images), target)
    return pred, explain(clf.net, images, list(methods), targets, options)


def classify_and_explain_in_parts(
    clf: Classifier,
    images: NDArray[np.float32],
    methods: Sequence[str],
    part: int,
    on_part: Callable[[int], None],
) -> tuple[Prediction, dict[str, Attribution]]:
    """``classify_and_explain`` over ``part`` slices at a time, ``on_part(slices done)`` after
    each (a progress bar). The results are those of one call: every map is normalised on
    its own and the network runs in eval mode, so nothing depends on the other slices."""
    preds: list[Prediction] = []
    parts: list[dict[str, Attribution]] = []
    for s in range(0, len(images), part):
        pred, maps = classify_and_explain(clf, images[s : s + part], methods)
        preds.append(pred)
        parts.append(maps)
        on_part(min(s + part, len(images)))
    joined = {f.name: _joined([getattr(p, f.name) for p in preds]) for f in fields(Prediction)}
    return Prediction(**joined), {m: _joined_maps([a[m] for a in parts]) for m in parts[0]}


def _joined_maps(parts: Sequence[Attribution]) -> Attribution:
    return Attribution(
        parts[0].method,
        np.concatenate([a.raw for a in parts]),
        np.concatenate([a.normalised for a in parts]),
        np.concatenate([a.targets for a in parts]),
        logits=_joined([a.logits for a in parts]),
        pooled=_joined([a.pooled for a in parts]),
    )


def _joined(arrays: Sequence[NDArray[Any] | None]) -> Any:
    """The parts' arrays end to end; None when a part has none (e.g. no scope detector)."""
    if any(a is None for a in arrays):
        return None
    return np.concatenate([a for a in arrays if a is not None])


def quality_options(clf: Classifier, steps: int) -> QualityOptions:
    """Deletion/insertion curves of ``steps`` points on the model's calibrated output."""
    return QualityOptions(steps=steps, temperature=clf.meta.temperature)


def measure_quality(
    clf: Classifier,
    images: NDArray[np.float32],
    attributions: dict[str, Attribution],
    head_masks: NDArray[np.bool_],
    options: QualityOptions | None = None,
    curves: bool = True,
) -> dict[str, list[QualityMetrics]]:
    """Explanation-quality figures per method and image (explain.quality).

    Without ``curves`` only the brain mass and head fraction are measured (no extra forward
    passes); the curve figures are then NaN.
    """
    if curves:
        return quality_metrics(clf.net, images, attributions, head_masks, options)
    nan = float("nan")
    return {
        m: [
            QualityMetrics(
                brain_mass(a.raw[i], head_masks[i]),
                nan,
                nan,
                nan,
                nan,
                float(head_masks[i].mean()),
            )  # fmt: skip
            for i in range(len(head_masks))
        ]
        for m, a in attributions.items()
    }


def display_image(source: NDArray[Any], max_side: int | None = None) -> NDArray[np.float32]:
    """The source image as windowed [0, 1] grey, at most ``max_side`` pixels wide."""
    shown = display_window(to_grey(source))
    if max_side is None:
        return shown
    return resize_to(shown, _display_shape(shown.shape, max_side))


def _display_shape(shape: tuple[int, ...], max_side: int) -> tuple[int, int]:
    h, w = int(shape[0]), int(shape[1])
    scale = min(1.0, max_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_to(arr: NDArray[np.float32], shape: tuple[int, int]) -> NDArray[np.float32]:
    """Bilinear resize of a float image to ``shape`` (rows, columns)."""
    if arr.shape == shape:
        return arr
    im = Image.fromarray(arr.astype(np.float32), mode="F")
    return np.asarray(im.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), np.float32)


def render_overlay(
    shown: NDArray[np.float32],
    pre: Preprocessed,
    normalised_map: NDArray[np.float32],
    colorbar: bool = True,
    text: Sequence[str] = (),
) -> NDArray[np.uint8]:
    """A map (model grid, [0, 1]) over the displayed source image, with burned-in ``text``."""
    heat = pre.to_source(normalised_map)
    if heat.shape != shown.shape:
        heat = resize_to(heat, (shown.shape[0], shown.shape[1]))
    rgb = overlay(shown, np.clip(heat, 0.0, 1.0), colorbar=colorbar)
    return add_text(rgb, list(text)) if text else rgb


def result_text(
    model_name: str, model_version: str, caption: str | Sequence[str], width: int = 56
) -> list[str]:
    """The lines burned into a DICOM overlay: model and version, caption, disclaimer.

    ``caption`` is one text or several (the series decision sentence of
    ``vocabulary.sentence``, then the slice's labelled model output); each is wrapped at
    ``width`` characters so the font stays readable.
    """
    lines = [f"{model_name} v{model_version}"]
    for text in [caption] if isinstance(caption, str) else caption:
        lines += textwrap.wrap(text, width) if text else []
    lines.append(BURNED_IN_DISCLAIMER)
    return lines
