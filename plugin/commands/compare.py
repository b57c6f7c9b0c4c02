"""brainxai compare: train several architectures from scratch on one split and tabulate them.

Every architecture gets the same duplicate-aware split (made once), augmentation, optimiser,
one-cycle schedule, image size and epochs as ``train`` (``inference.training.fit_network``),
and at most ``--budget-minutes`` of training each. Each is an MLflow run in the experiment
``brainxai-compare`` and a registered model ``brainxai-compare-<architecture>``; the
product's registered model and its champion alias are never touched. Results are written
per architecture as they finish (OUT/<architecture>/result.json), so ``--resume`` after an
interruption skips finished architectures and continues the interrupted one from its last
epoch. OUT/compare.json and OUT/compare.md hold the table.

The study-level result (``--studies``) runs the analyze path, which loads DenseNet169 only:
it is measured for densenet169 and marked n/a for the others.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from inference.architectures import (
    ARCHITECTURES,
    DEFAULT_ARCHITECTURES,
    NOT_FEASIBLE,
    Architecture,
    architecture,
)
from inference.bundle import BundleMeta, Classifier
from inference.registry import MlflowTracker, log_torch_model, tracking_run
from inference.study_evaluation import read_labels, tally
from inference.training import TrainingData, TrainOptions, fit_network, prepare_data
from plugin.commands.evaluate_studies import evaluate_row
from plugin.commands.train import add_training_arguments, training_fields
from plugin.comparison import MeasureOptions, markdown_table, measure
from plugin.pipeline import PipelineOptions
from plugin.settings import load_settings
from vocabulary.errors import InputError
from vocabulary.identity import CLASSES

log = logging.getLogger(__name__)

EXPERIMENT = "brainxai-compare"
REGISTERED_PREFIX = "brainxai-compare-"
STUDIES_NA = "n/a: the analyze pipeline loads DenseNet169 bundles only"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_arguments(p, epochs=5, image_size=128)
    p.add_argument("--out", required=True, type=Path, help="folder for the table, weights, work")
    p.add_argument(
        "--architectures",
        default=",".join(DEFAULT_ARCHITECTURES),
        help=f"comma-separated, of {', '.join([*ARCHITECTURES, *NOT_FEASIBLE])}",
    )
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=0.0,
        help="training time cap per architecture (0 = none), checked every batch",
    )
    p.add_argument(
        "--explain-images",
        type=int,
        default=64,
        help="validation images whose explanation brain mass is measured",
    )
    p.add_argument("--studies", type=Path, help="labels CSV (path,expected[,split]) of studies")
    p.add_argument("--studies-data", type=Path, help="folder the --studies paths are under")
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip finished architectures, continue an interrupted one",
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress bars")


def _header(args: argparse.Namespace, data: TrainingData) -> str:
    budget = f"{args.budget_minutes:g} min" if args.budget_minutes > 0 else "no time cap"
    info = data.split_info
    return (
        f"Architecture comparison (research use only, not for diagnosis): {args.image_size} px, "
        f"{args.epochs} epochs, {info['n_train']} training / {info['n_val']} validation images "
        f"(duplicate-aware split, seed {args.seed}), training budget {budget} per "
        f"architecture; all trained from scratch on this CPU ({os.cpu_count()} cores, "
        f"{torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d', time.gmtime())}."
    )


def _study_result(
    arch: Architecture, net: torch.nn.Module, args: argparse.Namespace, data: TrainingData
) -> dict[str, Any] | str:
    """Study-level totals through the analyze path (DenseNet169 only; see the module doc)."""
    if arch.name != "densenet169":
        return STUDIES_NA
    settings = load_settings()
    meta = BundleMeta(
        version=f"compare-{time.strftime('%Y%m%d%H%M', time.gmtime())}", preprocess=data.preprocess
    )
    clf = Classifier(net, meta, None)
    opts = PipelineOptions(rules_path=settings.selection_rules)
    work = args.out / arch.name / "studies"
    outcomes = [
        evaluate_row(row, args.studies_data, work, clf, opts) for row in read_labels(args.studies)
    ]
    return dict(tally(outcomes))


def _train_one(
    arch: Architecture, args: argparse.Namespace, base: TrainOptions, data: TrainingData
) -> dict[str, Any]:
    """Train, measure and register one architecture inside its own MLflow run."""
    opts = replace(base, work_dir=args.out / arch.name, resume=args.resume)
    uri = load_settings().tracking_uri()
    with tracking_run(uri, f"compare-{arch.name}", experiment=EXPERIMENT) as run:
        tracker = MlflowTracker()
        params = {k: str(v) for k, v in asdict(opts).items()}
        tracker.log_params(
            {
                **params,
                **data.split_info,
                "architecture": arch.name,
                "budget_minutes": args.budget_minutes,
            }
        )
        started = time.monotonic()
        torch.manual_seed(opts.seed)
        net = arch.build(opts.image_size, len(CLASSES))
        fitted = fit_network(net, data, opts, tracker, budget_seconds=args.budget_minutes * 60)
        train_minutes = (time.monotonic() - started) / 60
        mopts = MeasureOptions(explain_images=args.explain_images)
        weights = args.out / arch.name / "weights.pt"
        row = measure(arch, fitted.net, data.x_val, data.y_val, weights, mopts)
        row.update(
            epochs_done=len(fitted.history),
            stopped_by_budget=fitted.stopped_by_budget,
            train_minutes=round(train_minutes, 1),
        )
        if args.studies is not None:
            row["studies"] = _study_result(arch, fitted.net, args, data)
        scalars = {
            k: float(v)
            for k, v in row.items()
            if isinstance(v, int | float) and not math.isnan(float(v))
        }
        tracker.log_metrics(scalars, step=len(fitted.history))
        import mlflow

        mlflow.log_dict(row, "compare_row.json")
        mlflow.log_artifact(str(weights))
        name = REGISTERED_PREFIX + arch.name
        row.update(
            run_id=run.info.run_id,
            registered_model=name,
            registered_version=log_torch_model(fitted.net, name),
        )
    return row


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.architectures.split(",") if n.strip()]
    for n in names:
        if n not in NOT_FEASIBLE:
            architecture(n)  # unknown names fail before any training
    if (args.studies is None) != (args.studies_data is None):
        raise InputError("--studies and --studies-data go together")
    args.out.mkdir(parents=True, exist_ok=True)
    base = TrainOptions(
        **training_fields(args), work_dir=args.out / "split", progress=not args.quiet
    )
    data = prepare_data(base)
    rows: list[dict[str, Any]] = []
    for n in names:
        if n in NOT_FEASIBLE:
            rows.append({"architecture": n, "not_feasible": NOT_FEASIBLE[n]})
            continue
        done = args.out / n / "result.json"
        if args.resume and done.is_file():
            rows.append(json.loads(done.read_text()))
            continue
        row = _train_one(architecture(n), args, base, data)
        done.write_text(json.dumps(row, indent=1))
        rows.append(row)
        print(
            f"{n}: val accuracy {row['val_accuracy']:.3f}, {row['train_minutes']} min", flush=True
        )
    header = _header(args, data)
    table = markdown_table(rows, header)
    report = {
        "header": header,
        "split": data.split_info,
        "rows": rows,
        "options": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "compare.json").write_text(json.dumps(report, indent=1))
    (args.out / "compare.md").write_text(table)
    print(table)
    return 0
