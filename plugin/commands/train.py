"""brainxai train: train DenseNet169 from scratch, track in MLflow, register the model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from inference.registry import MlflowTracker, log_bundle, log_plots, tracking_run
from inference.storage import local_path, store_file
from inference.training import TrainOptions, train
from plugin.settings import load_settings
from vocabulary.identity import CLASSES


def add_training_arguments(p: argparse.ArgumentParser, epochs: int, image_size: int) -> None:
    """The data, split and optimiser arguments that ``train`` and ``compare`` share."""
    p.add_argument("--data", required=True, type=Path, help="folder with one subfolder per class")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--image-size", type=int, default=image_size)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-fraction", type=float, default=0.12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-per-class", type=int, default=0, help="use at most N images per class")
    p.add_argument("--epoch-fraction", type=float, default=1.0, help="share drawn per epoch")


def training_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainOptions fields of ``add_training_arguments``."""
    return {
        "data_dir": args.data,
        "epochs": args.epochs,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "limit_per_class": args.limit_per_class,
        "epoch_fraction": args.epoch_fraction,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_arguments(p, epochs=14, image_size=160)
    p.add_argument(
        "--ema-decay", type=float, default=0.0, help="weight EMA decay per step (0 = off)"
    )
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--init-from",
        help="start from these weights (a bundle or checkpoint: a file, s3:// or gs:// URI) "
        "instead of random ones",
    )
    p.add_argument(
        "--average-with",
        help="start from the mean of the --init-from weights and these (a uniform weight soup "
        "of two fine-tunes of one start; with --epochs 0 the soup is only calibrated)",
    )
    p.add_argument(
        "--work-dir", type=Path, help="checkpoints and cache (default DATA_DIR/training)"
    )
    p.add_argument(
        "--real-slices", type=Path, help="labelled real MR slices (brainxai real-slices) to add"
    )
    p.add_argument(
        "--freeze", default="", help="comma-separated parameter-name prefixes to keep fixed"
    )
    p.add_argument(
        "--distill-from",
        help="keep the JPEG outputs close to this network's (a bundle or checkpoint: a file, "
        "s3:// or gs:// URI) while learning the real slices (learning without forgetting)",
    )
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of that term")
    p.add_argument("--distill-temperature", type=float, default=2.0)
    p.add_argument(
        "--export", help="also copy the trained bundle here (a path, s3:// or gs:// URI)"
    )
    p.add_argument("--run-name", default="train")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    work = args.work_dir or settings.data_dir / "training"
    opts = TrainOptions(
        **training_fields(args),
        work_dir=work,
        ema_decay=args.ema_decay,
        resume=args.resume,
        init_from=None if args.init_from is None else local_path(args.init_from),
        average_with=None if args.average_with is None else local_path(args.average_with),
        real_slices=args.real_slices,
        freeze=tuple(f for f in args.freeze.split(",") if f),
        distill_from=None if args.distill_from is None else local_path(args.distill_from),
        distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature,
    )
    with tracking_run(settings.tracking_uri(), args.run_name) as run_info:
        result = train(opts, MlflowTracker())
        final = {f"val_{k}": float(result.val_metrics[k]) for k in ("accuracy", "macro_f1", "ece")}
        MlflowTracker().log_metrics({**final, "train_seconds": result.seconds}, step=opts.epochs)
        log_plots(result.val_labels, result.val_probs, list(CLASSES))
        import mlflow

        mlflow.log_dict(result.val_metrics, "val_metrics.json")
        reg = log_bundle(result.bundle_path, float(result.val_metrics["accuracy"]))
    exported = store_file(result.bundle_path, args.export) if args.export else None
    print(
        json.dumps(
            {
                "run_id": run_info.info.run_id,
                "bundle": str(result.bundle_path),
                "exported": exported,
                "registered_version": reg.version,
                "champion": reg.is_champion,
                "val_accuracy": result.val_metrics["accuracy"],
                "val_macro_f1": result.val_metrics["macro_f1"],
                "train_seconds": round(result.seconds, 1),
                "split": result.split_info,
            },
            indent=2,
        )
    )
    return 0
