"""brainxai predict: class and probabilities for PNG/JPEG and DICOM files (the files were
read first by plugin.commands.predict_inputs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from inference.bundle import Classifier
from inference.registry import load_model
from inference.scope_gate import out_of_scope_reason
from plugin.analysis import classify, prepare
from plugin.commands.predict_inputs import Inputs
from plugin.settings import load_settings
from plugin.sniff import LoadedImage
from vocabulary.sentence import image_sentence


def run(args: argparse.Namespace, inputs: Inputs) -> int:
    """Classify the images of the files that could be read; exit 1 if any could not."""
    failed = sum(isinstance(images, str) for _, images in inputs)
    settings = load_settings()
    clf = load_model(args.model, settings.tracking_uri())
    rows: list[dict[str, Any]] = []
    for path, loaded in inputs:
        if isinstance(loaded, str):
            rows.append({"file": str(path), "error": loaded})
        else:
            rows += _classified(clf, path, loaded)
    out = {"model": {"name": clf.meta.name, "version": clf.version}, "results": rows}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"model {clf.meta.name} {clf.version} - research use only, not for diagnosis")
        for r in rows:
            if "error" in r:
                print(f"{r['file']}: ERROR {r['error']}")
            else:
                probs_txt = " ".join(f"{c}={v:.3f}" for c, v in r["probabilities"].items())
                label = "model output, not a result" if r["class"] is None else "model output"
                print(f"{r['file']}: {r['sentence']}  ({label}: {probs_txt})")
    return 1 if failed else 0


def _classified(clf: Classifier, path: Path, loaded: list[LoadedImage]) -> list[dict[str, Any]]:
    """One row per image of ``path`` (several for a multi-frame file)."""
    images = [item.pixels for item in loaded]
    prepared = prepare(clf, images)
    pred = classify(clf, prepared)
    rows = []
    for k in range(len(pred.probs)):
        name = str(path) if len(pred.probs) == 1 else f"{path}[{k}]"
        why = loaded[k].refusal or out_of_scope_reason(images[k], prepared[k], pred, k, clf)
        rows.append(_row(name, clf, pred, k, why))
    return rows


def _row(name: str, clf: Any, pred: Any, k: int, why: str | None) -> dict[str, Any]:
    """One image: no class when ``why`` says it is out of scope (the raw output is kept,
    labelled ``model_output``), and the decision sentence of vocabulary.sentence."""
    row = pred.probs[k]
    top = int(row.argmax())
    label = clf.meta.classes[top]
    return {
        "file": name,
        "class": None if why else label,
        "model_output": label,
        "probabilities": {
            c: round(float(v), 4) for c, v in zip(clf.meta.classes, row, strict=True)
        },
        "ood_score": round(float(pred.ood_score[k]), 2),
        "trustworthy": why is None,
        "out_of_scope": why,
        "reason": why,
        "sentence": image_sentence(label, float(row[top]), why),
    }
