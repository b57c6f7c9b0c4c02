"""brainxai evaluate-studies: the whole analyze path on labelled studies, with totals.

``--labels`` is a CSV with columns ``path,expected[,split[,patient]]``: a study folder
(relative to ``--data``), its expected class (glioma, meningioma, notumor, pituitary, or
``other`` for a non-tumour lesion), optionally where the case was used (train/dev) and whose
it is (studies of one patient are also counted once, as a patient). Each study runs
through ``analyze`` (reading, selection, classification, explanation, the series/study
rule, writing); the report lists per study the expected class, the result and the reason,
and totals the outcomes (see ``inference.study_evaluation``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from explain.options import parse_methods
from inference.bundle import Classifier
from inference.registry import load_model, resolve_model, tag_real_check
from inference.study_evaluation import StudyOutcome, markdown_table, read_labels, tally
from plugin.pipeline import PipelineOptions, analyze_paths
from plugin.settings import load_settings
from vocabulary.errors import BrainxaiError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="folder the CSV paths are under")
    p.add_argument(
        "--labels", required=True, type=Path, help="CSV: path,expected[,split[,patient]]"
    )
    p.add_argument("--out", required=True, type=Path, help="report JSON (objects beside it)")
    p.add_argument("--model", help="bundle file or models:/ URI (default: bundled model)")
    p.add_argument("--methods", default="gradcam", help="explanation methods shown (the gate "
                   "reads Grad-CAM whatever is shown)")  # fmt: skip
    p.add_argument(
        "--tag-model",
        action="store_true",
        help="record the dev-split totals on the model's MLflow version (for models --promote)",
    )


def evaluate_row(
    row: dict[str, str], data: Path, work: Path, clf: Classifier, opts: PipelineOptions
) -> StudyOutcome:
    name, expected = row["path"], row["expected"]
    where = {"split": row.get("split", ""), "patient": row.get("patient", "")}
    folder = data / name
    try:
        out = work / name.replace("/", "_")
        summary = analyze_paths([folder], clf, out, opts)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    except BrainxaiError as exc:
        return StudyOutcome(name, expected, "error", str(exc).splitlines()[0], **where)
    studies = summary.get("studies", [])
    if not studies:
        return StudyOutcome(name, expected, "error", "no readable study", **where)
    pred = studies[0]["prediction"]
    if len(studies) > 1:
        log.warning("%s holds %d studies; the first is scored", name, len(studies))
    return StudyOutcome(name, expected, pred["class"], pred["reason"], **where)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    clf = load_model(args.model, settings.tracking_uri())
    opts = PipelineOptions(methods=parse_methods(args.methods), rules_path=settings.selection_rules)
    work = args.out.parent / (args.out.stem + "-objects")
    rows = read_labels(args.labels)
    outcomes = []
    for row in rows:
        outcome = evaluate_row(row, args.data, work, clf, opts)
        print(
            f"{outcome.name}: expected {outcome.expected}, got {outcome.result} "
            f"({outcome.outcome}; {outcome.reason})",
            flush=True,
        )
        outcomes.append(outcome)
    report = {
        "model": {"name": clf.meta.name, "version": clf.version},
        "totals": tally(outcomes),
        "totals_by_split": {
            s: tally(o for o in outcomes if o.split == s)
            for s in sorted({o.split for o in outcomes})
        },
        "studies": [{**o.__dict__, "outcome": o.outcome} for o in outcomes],
        "table": markdown_table(outcomes),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(markdown_table(outcomes))
    print(json.dumps(report["totals"]))
    if args.tag_model:
        dev = tally(o for o in outcomes if o.split in ("dev", ""))
        harmful = dev["wrong_tumour_class"] + dev["normal_given_tumour"] + dev["missed_tumour"]
        path = resolve_model(args.model, settings.tracking_uri())
        version = tag_real_check(
            settings.tracking_uri(), path, int(dev["right"]), int(harmful), int(dev["studies"])
        )
        print(f"MLflow version {version}: real-study check recorded")
    return 0
