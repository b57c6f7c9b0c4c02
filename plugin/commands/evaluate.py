"""brainxai evaluate: metrics of a model on a labelled folder, as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from inference.bundle import Classifier
from inference.classification_metrics import classification_metrics
from inference.dataset import LabelledImage, list_images, load_image, repeat_training_split
from inference.preprocessing import preprocess
from inference.registry import load_model
from plugin.commands.progress_bar import add_quiet, progress_bar
from plugin.settings import load_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_quiet(p)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="metrics JSON file")
    p.add_argument("--model", help="weights file or models:/ URI (default: bundled model)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--split",
        choices=("all", "train", "validation"),
        default="all",
        help="all images, or one side of the model's duplicate-aware training split of DIR",
    )
    p.add_argument("--val-fraction", type=float, help="override the model's recorded value")
    p.add_argument("--seed", type=int, help="override the model's recorded split seed")


def _selected(
    items: list[LabelledImage], clf: Classifier, args: argparse.Namespace
) -> list[LabelledImage]:
    if args.split == "all":
        return items
    options = dict(clf.meta.extra.get("options", {}))
    for key in ("val_fraction", "seed"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    split = repeat_training_split(items, options)
    return list(split.validation if args.split == "validation" else split.train)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    clf = load_model(args.model, settings.tracking_uri())
    items = _selected(list_images(args.data, clf.meta.classes), clf, args)
    cfg = clf.meta.preprocess
    probs = []
    with progress_bar(len(items), "image", "evaluate", args.quiet) as bar:
        for start in range(0, len(items), args.batch_size):
            chunk = items[start : start + args.batch_size]
            batch = np.stack([preprocess(load_image(i.path), cfg).image for i in chunk])
            probs.append(clf.predict(batch).probs)
            bar.update(len(chunk))
    p = np.concatenate(probs)
    labels = np.array([i.label for i in items])
    metrics = classification_metrics(labels, p, clf.meta.classes)
    classes = list(clf.meta.classes)
    metrics["model"] = {"name": clf.meta.name, "version": clf.version}
    metrics["split"] = args.split
    metrics["predictions"] = [
        {
            "path": str(i.path.relative_to(args.data)),
            "label": classes[i.label],
            "pred": classes[int(row.argmax())],
            "probs": {c: round(float(v), 6) for c, v in zip(classes, row, strict=True)},
        }
        for i, row in zip(items, p, strict=True)
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=1))
    print(
        f"n={metrics['n']} accuracy={metrics['accuracy']:.4f} macro_f1={metrics['macro_f1']:.4f} "
        f"macro_auc={metrics['macro_auc']:.4f} ece={metrics['ece']:.4f} -> {args.out}"
    )
    return 0
