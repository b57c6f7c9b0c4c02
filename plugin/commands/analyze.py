"""brainxai analyze: the whole pipeline on DICOM files or folders, offline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from explain.attribution import parse_methods
from inference.registry import load_model
from plugin.pipeline import PipelineOptions, analyze_paths
from plugin.settings import load_settings

NAME = "analyze"
HELP = "classify and explain DICOM studies offline; writes SC/PM/SR objects and summary.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, help="DICOM files or folders")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--methods", default="gradcam,saliency", help="explanation methods")
    p.add_argument("--model", help="weights file or models:/ URI (default: bundled model)")
    p.add_argument("--rules", type=Path, help="series selection rules (YAML)")
    p.add_argument("--float-maps", action="store_true", help="float Parametric Maps")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    clf = load_model(args.model, settings.tracking_uri())
    opts = PipelineOptions(
        methods=parse_methods(args.methods),
        rules_path=args.rules or settings.selection_rules,
        float_maps=args.float_maps,
    )
    bar = tqdm(desc="series", unit="series")
    summary = analyze_paths(args.paths, clf, args.out, opts, progress=lambda _uid: bar.update())
    bar.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    for st in summary["studies"]:
        pred = st["prediction"]
        print(f"study {st['study_instance_uid']}: {pred['class']} ({pred['reason']})")
        for se in st["series"]:
            label = se.get("prediction", {}).get("class", "-")
            print(f"  series {se['series_instance_uid']}: {label}  [{se['reason']}]")
    for r in summary["rejected"]:
        print(f"  rejected {r['path']}: {r['reason']}")
    print(f"research use only, not for diagnosis; outputs in {args.out}")
    return 0
