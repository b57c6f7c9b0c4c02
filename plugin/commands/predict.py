"""brainxai predict: class and probabilities for PNG/JPEG and DICOM files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from inference.registry import load_model
from inference.scope_gate import out_of_scope_reason
from plugin.analysis import classify, prepare
from plugin.settings import load_settings
from plugin.sniff import load_any_image
from vocabulary.errors import InputError

NAME = "predict"
HELP = "classify PNG/JPEG/DICOM files (research use only, not for diagnosis)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--model", help="weights file or models:/ URI (default: bundled model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    clf = load_model(args.model, settings.tracking_uri())
    rows: list[dict[str, Any]] = []
    failed = 0
    for path in args.files:
        try:
            images = load_any_image(path)
        except InputError as exc:
            rows.append({"file": str(path), "error": str(exc)})
            failed += 1
            continue
        prepared = prepare(clf, images)
        pred = classify(clf, prepared)
        for k, row in enumerate(pred.probs):
            name = str(path) if len(pred.probs) == 1 else f"{path}[{k}]"
            why = out_of_scope_reason(images[k], prepared[k], pred, k, clf)
            rows.append(
                {
                    "file": name,
                    "class": clf.meta.classes[int(row.argmax())],
                    "probabilities": {
                        c: round(float(v), 4) for c, v in zip(clf.meta.classes, row, strict=True)
                    },
                    "ood_score": round(float(pred.ood_score[k]), 2),
                    "trustworthy": why is None,
                    "out_of_scope": why,
                }
            )
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
                note = f"  NOT TRUSTWORTHY: {r['out_of_scope']}" if r["out_of_scope"] else ""
                print(f"{r['file']}: {r['class']}  ({probs_txt}){note}")
    return 1 if failed else 0
