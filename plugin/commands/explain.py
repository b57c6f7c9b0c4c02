"""brainxai explain: attribution maps, overlays and quality metrics for image files."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from explain.attribution import Attribution
from explain.options import DEFAULT_METHODS, METHODS, ExplainOptions, parse_methods
from explain.quality import QualityMetrics, QualityOptions
from explain.rendering import raw_png16, to_png
from inference.bundle import Classifier
from inference.preprocessing import Preprocessed
from inference.registry import load_model
from plugin.analysis import (
    classify_and_explain,
    display_image,
    measure_quality,
    prepare,
    quality_options,
    render_overlay,
    stack,
)
from plugin.settings import load_settings
from plugin.sniff import load_any_image
from vocabulary.errors import InputError

BANNER = "RESEARCH USE — NOT FOR DIAGNOSIS"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma list of {METHODS}")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--model", help="bundle file or models:/ URI (default: the bundled model)")
    p.add_argument("--target", help="class name to explain instead of the predicted class")
    p.add_argument("--steps", type=int, default=8, help="deletion/insertion curve steps")
    p.add_argument("--no-curves", action="store_true", help="brain mass only (no extra passes)")
    p.add_argument("--batch-size", type=int, default=16)


def load_classifier(ref: str | None) -> Classifier:
    """A bundle file, a models:/ URI (MLflow) or None for the configured/bundled model."""
    settings = load_settings()
    ref = ref or settings.model
    uri = settings.tracking_uri() if ref and ref.startswith("models:/") else None
    clf: Classifier = load_model(ref, uri, register=False)
    return clf


@dataclass(frozen=True)
class Item:
    name: str  # output file stem, unique
    label: str  # the input as given (file, or file[frame])
    source: NDArray[Any]
    pre: Preprocessed


def load_items(files: list[Path], clf: Classifier) -> list[Item]:
    items: list[Item] = []
    seen: set[str] = set()
    for path in files:
        images = load_any_image(path)
        for k, img in enumerate(images):
            stem = path.stem if len(images) == 1 else f"{path.stem}_{k:03d}"
            name, n = stem, 1
            while name in seen:
                n += 1
                name = f"{stem}_{n}"
            seen.add(name)
            label = str(path) if len(images) == 1 else f"{path}[{k}]"
            (pre,) = prepare(clf, [img])
            items.append(Item(name, label, img, pre))
    return items


def _target_index(clf: Classifier, target: str | None) -> int | None:
    if target is None:
        return None
    if target not in clf.meta.classes:
        raise InputError(f"unknown class {target!r}; choose from {clf.meta.classes}")
    return clf.meta.classes.index(target)


def run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods)
    clf = load_classifier(args.model)
    items = load_items(list(args.files), clf)
    fixed = _target_index(clf, args.target)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    qopts = quality_options(clf, args.steps)
    results = []
    for start in range(0, len(items), max(1, args.batch_size)):
        batch = items[start : start + max(1, args.batch_size)]
        results += explain_batch(clf, batch, methods, fixed, qopts, not args.no_curves, out)
    report = {
        "model": {"name": clf.meta.name, "version": clf.version},
        "research_use_only": True,
        "methods": list(methods),
        "raw_maps": "16-bit PNG of the map on the model's input grid; tEXt brainxai:min/max "
        "give the value range",
        "results": results,
    }
    (out / "explanations.json").write_text(json.dumps(report, indent=2))
    for r in results:
        mass = " ".join(f"{m}:{e['metrics']['brain_mass']:.2f}" for m, e in r["methods"].items())
        print(
            f"{r['file']}: {r['prediction']['class']} "
            f"p={r['prediction']['probability']:.3f} brain_mass {mass}"
        )
    print(f"wrote {out / 'explanations.json'} (research use only, not for diagnosis)")
    return 0


def explain_batch(
    clf: Classifier,
    batch: list[Item],
    methods: tuple[str, ...],
    target: int | None,
    qopts: QualityOptions,
    curves: bool,
    out: Path,
) -> list[dict[str, Any]]:
    """Predict, explain, measure and render one batch; returns its JSON rows."""
    images = stack([it.pre for it in batch])
    pred, maps = classify_and_explain(clf, images, methods, ExplainOptions(), target)
    predicted = pred.probs.argmax(axis=1)
    targets = maps[methods[0]].targets
    masks = np.stack([it.pre.head_mask for it in batch])
    quality = measure_quality(clf, images, maps, masks, qopts, curves)
    classes = clf.meta.classes
    rows = []
    for i, it in enumerate(batch):
        p = int(predicted[i])
        row: dict[str, Any] = {
            "file": it.label,
            "prediction": {
                "class": classes[p],
                "probability": float(pred.probs[i, p]),
                "probabilities": {c: float(v) for c, v in zip(classes, pred.probs[i], strict=True)},
                "ood_score": float(pred.ood_score[i]),
                "energy": float(pred.energy[i]),
            },
            "target": classes[int(targets[i])],
            "head_fraction_source": it.pre.head_fraction,
            "model_input_png": _save(out / f"{it.name}_input.png", _grey_png(it.pre.image)),
            "methods": {},
        }
        for m in methods:
            row["methods"][m] = _render(it, i, m, maps[m], quality[m][i], classes, out)
        rows.append(row)
    return rows


def _render(
    it: Item,
    i: int,
    method: str,
    a: Attribution,
    q: QualityMetrics,
    classes: tuple[str, ...],
    out: Path,
) -> dict[str, Any]:
    caption = f"{method}: {classes[int(a.targets[i])]}"
    rgb = render_overlay(display_image(it.source), it.pre, a.normalised[i], text=[BANNER, caption])
    raw = a.raw[i]
    return {
        "overlay_png": _save(out / f"{it.name}_{method}_overlay.png", to_png(rgb)),
        "raw_png16": _save(out / f"{it.name}_{method}_raw16.png", raw_png16(raw)),
        "raw_min": float(raw.min()),
        "raw_max": float(raw.max()),
        "metrics": {k: (None if not np.isfinite(v) else v) for k, v in q.to_dict().items()},
    }


def _grey_png(image: NDArray[np.float32]) -> bytes:
    rgb = np.repeat((np.clip(image, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    return to_png(rgb)


def _save(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return path.name
