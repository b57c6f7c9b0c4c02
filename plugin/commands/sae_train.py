"""brainxai sae-train: a top-k sparse autoencoder on the model's final feature map.

Tokens: every position of the final ReLU's map (6 x 6 at 192 px) of the images of the
model's duplicate-aware training split of ``--data`` (the same split ``train`` and
``evaluate --split`` make); optionally also real slices (``brainxai real-slices``).
The tokens are cached once as float16 ``.npy`` under ``--cache`` (not in the repository).
Writes the SAE file (default: beside the bundled model, named by model version; the
``sae`` explanation method finds it there), ``sae-report.json`` and one montage PNG per
class into ``--out``, and logs the SAE as an artifact of the model version's MLflow run.
Research use only, not for diagnosis.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from explain.sae_features import (
    FeatureTable,
    brain_masks,
    contributions_of,
    decision_relevant_outside,
    feature_montage,
    feature_table,
    feature_tokens,
    grid_fractions,
)
from explain.sparse_autoencoder import SAEConfig, SAEInfo, TopKSAE, sae_metrics, save_sae, train_sae
from inference.bundle import Classifier
from inference.dataset import (
    LabelledImage,
    limit_per_class,
    list_images,
    load_image,
    repeat_training_split,
)
from inference.precision import bf16_fast
from inference.preprocessing import preprocess
from inference.registry import load_model, log_sae, resolve_model
from plugin.analysis import sae_path_for
from plugin.commands.progress_bar import add_quiet, progress_bar
from plugin.settings import load_settings
from vocabulary.errors import InputError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_quiet(p)
    p.add_argument("--data", required=True, type=Path, help="folder with one subfolder per class")
    p.add_argument("--model", help="weights file or models:/ URI (default: bundled model)")
    p.add_argument("--out", required=True, type=Path, help="folder for sae-report.json and PNGs")
    p.add_argument("--sae-out", type=Path, help="SAE file (default: beside the bundled model)")
    p.add_argument("--real-slices", type=Path, help="labelled real slices .npz (real-slices)")
    p.add_argument("--real-stride", type=int, default=1, help="every n-th real slice")
    p.add_argument("--train-on-real", action="store_true", help="add real slices to training")
    p.add_argument(
        "--train-per-class", type=int, default=0, help="at most N training images per class"
    )
    p.add_argument("--cache", type=Path, help="token cache folder (default: a temp folder)")
    p.add_argument("--features", type=int, default=SAEConfig.n_features, help="dictionary size")
    p.add_argument("--k", type=int, default=SAEConfig.k, help="active features per token")
    p.add_argument("--epochs", type=int, default=SAEConfig.epochs)
    p.add_argument("--batch-size", type=int, default=SAEConfig.batch_size, help="tokens")
    p.add_argument("--lr", type=float, default=SAEConfig.lr)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop training after (0 = off)")
    p.add_argument("--top", type=int, default=5, help="decision-relevant features per image")
    p.add_argument("--montage-features", type=int, default=16, help="features per class PNG")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the SAE to MLflow")


CHUNK = 128  # images per cache file: an interrupted extraction keeps what it finished


def _key(clf: Classifier, names: Sequence[str]) -> str:
    h = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return f"{clf.meta.name}-{clf.weights_version}-{clf.image_size}-{h}"


def _extract(
    clf: Classifier, load: Any, names: Sequence[str], cache: Path, quiet: bool, what: str
) -> tuple[NDArray[np.float16], NDArray[np.float32]]:
    """Tokens (N, h, w, C) float16 and brain fractions (N, h, w) of the images ``names``
    (``load(a, b)`` gives images a..b-1), cached per chunk of images."""
    toks, brains = [], []
    cache.mkdir(parents=True, exist_ok=True)
    with progress_bar(len(names), "image", f"features ({what})", quiet) as bar:
        for s in range(0, len(names), CHUNK):
            key = _key(clf, names[s : s + CHUNK])
            tok_file, brain_file = cache / f"{key}-tokens.npy", cache / f"{key}-brain.npy"
            if not (tok_file.is_file() and brain_file.is_file()):
                images = load(s, min(len(names), s + CHUNK))
                t = feature_tokens(clf.net, images, bf16_fast())
                np.save(brain_file, grid_fractions(brain_masks(images), t.shape[1:3]))
                np.save(tok_file, t)
            toks.append(np.load(tok_file))
            brains.append(np.load(brain_file))
            bar.update(len(toks[-1]))
            log.info("%s: features of %d of %d images", what, s + len(toks[-1]), len(names))
    return np.concatenate(toks), np.concatenate(brains)


def _jpeg_loader(clf: Classifier, items: Sequence[LabelledImage]) -> Any:
    def load(a: int, b: int) -> NDArray[np.float32]:
        return np.stack([preprocess(load_image(i.path), clf.meta.preprocess).image
                         for i in items[a:b]])  # fmt: skip

    return load


def _real_slices(
    path: Path, clf: Classifier, stride: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Every ``stride``-th slice of a real-slices .npz and its labels."""
    with np.load(path) as z:
        step = max(1, stride)
        images = z["images"][::step].astype(np.float32)
        labels = z["labels"][::step].astype(np.int64)
    if images.shape[-1] != clf.image_size:
        raise InputError(f"{path}: slices of {images.shape[-1]} px, model {clf.image_size} px")
    return images, labels


def _montage_rows(
    sae: TopKSAE, tokens: NDArray[Any], table: FeatureTable, features: Sequence[int], m: int
) -> tuple[list[tuple[str, list[int]]], list[NDArray[np.float32]]]:
    rows, maps = [], []
    for f in features:
        idx = [int(i) for i in table.top_images[f][:m]]
        x = torch.from_numpy(np.asarray(tokens[idx], dtype=np.float32))
        with torch.no_grad():
            z = sae.encode(x.reshape(-1, x.shape[-1]))[:, f].reshape(x.shape[:3])
        rows.append((f"f{f} out {table.outside_share[f]:.2f}", idx))
        maps.append(z.numpy())
    return rows, maps


def _class_features(contrib: Any, labels: NDArray[Any], c: int, n: int) -> list[int]:
    """The ``n`` features with the largest mean positive contribution to class ``c`` over
    the images of class ``c``."""
    rows = labels == c
    if not rows.any():
        return []
    mean = np.clip(contrib.contributions[rows, :, c], 0, None).mean(0)
    return [int(f) for f in np.argsort(-mean)[:n] if mean[f] > 0]


def _feature_rows(table: FeatureTable, classes: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for f in np.flatnonzero(table.mass > 0):
        out.append({
            "feature": int(f),
            "mass": round(float(table.mass[f]), 4),
            "outside_share": round(float(table.outside_share[f]), 4),
            "by_true_class": dict(zip(classes, np.round(table.by_true_class[f], 5).tolist(),
                                      strict=True)),
            "by_predicted_class": dict(zip(classes,
                                           np.round(table.by_predicted_class[f], 5).tolist(),
                                           strict=True)),
            "top_images": [int(i) for i in table.top_images[f]],
        })  # fmt: skip
    return out


def _evaluate_set(
    sae: TopKSAE, clf: Classifier, tokens: NDArray[Any], brain: NDArray[np.float32],
    labels: NDArray[np.int64], top: int,
) -> tuple[dict[str, Any], FeatureTable, Any]:  # fmt: skip
    classes = list(clf.meta.classes)
    contrib = contributions_of(sae, clf.net, tokens)
    pred = contrib.logits.argmax(1)
    table = feature_table(sae, tokens, brain, labels, pred, len(classes))
    flat = tokens.reshape(-1, tokens.shape[-1])
    figures = {
        "n_images": int(len(labels)),
        "accuracy": float((pred == labels).mean()),
        "reconstruction": sae_metrics(sae, flat).to_dict(),
        "brain_area_share": float(brain.mean()),
        "decision_relevant_outside_brain": decision_relevant_outside(
            contrib, table, labels, classes, top
        ),
    }
    return figures, table, contrib


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    clf = load_model(args.model, settings.tracking_uri(), register=False)
    cache = args.cache or Path(tempfile.gettempdir()) / "brainxai-sae-cache"
    items = list_images(args.data, clf.meta.classes)
    split = repeat_training_split(items, dict(clf.meta.extra.get("options", {})))
    train_side = _subset(split.train, args.train_per_class)
    sets = _token_sets(args, clf, train_side, split.validation, cache)
    train_tokens = _training_tokens(sets, args.train_on_real)
    cfg = SAEConfig(n_features=args.features, k=args.k, lr=args.lr, epochs=args.epochs,
                    batch_size=args.batch_size, max_seconds=args.max_minutes * 60)  # fmt: skip
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    start = time.monotonic()
    with progress_bar(cfg.epochs * -(-len(train_tokens) // cfg.batch_size), "batch",
                      "sae", args.quiet) as bar:  # fmt: skip
        sae, history = train_sae(train_tokens, cfg, lambda *_: bar.update(1))
    seconds = time.monotonic() - start
    sae_file = args.sae_out or sae_path_for(clf.meta.name, clf.weights_version)
    grid = sets["validation"][0].shape[1:3]
    info = SAEInfo(clf.meta.name, clf.weights_version, grid=(int(grid[0]), int(grid[1])),
                   extra={"config": {k: float(v) for k, v in vars(cfg).items()}})  # fmt: skip
    save_sae(sae_file, sae, info)
    report = _report(args, clf, sae, cfg, sets, history, seconds, split.validation)
    report["data"] = {
        "train_images": len(train_side), "train_per_class": args.train_per_class,
        "validation_images": len(split.validation), "real_slices": str(args.real_slices or ""),
        "real_stride": args.real_stride, "train_on_real": bool(args.train_on_real),
    }  # fmt: skip
    report["sae_file"] = {"path": str(sae_file), "bytes": sae_file.stat().st_size}
    if not args.no_mlflow:
        bundle = resolve_model(args.model, settings.tracking_uri())
        figures = {**report["validation"]["reconstruction"], "n_features": cfg.n_features,
                   "k": cfg.k}  # fmt: skip
        version = log_sae(settings.tracking_uri(), bundle, sae_file, figures)
        report["mlflow"] = {"registered_version": version, "artifact": f"sae/{sae_file.name}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sae-report.json").write_text(report_json(report))
    _print_summary(report, args.out)
    return 0


def _token_sets(
    args: argparse.Namespace, clf: Classifier, train_side: Sequence[LabelledImage],
    validation: Sequence[LabelledImage], cache: Path,
) -> dict[str, Any]:  # fmt: skip
    """(tokens, brain fractions, labels) of the training side, validation and real slices."""
    sets = {}
    for name, part in (("train", train_side), ("validation", validation)):
        names = [str(i.path) for i in part]
        tokens, brain = _extract(clf, _jpeg_loader(clf, part), names, cache, args.quiet, name)
        sets[name] = (tokens, brain, np.array([i.label for i in part], dtype=np.int64))
    if args.real_slices is not None:
        real_images, real_labels = _real_slices(args.real_slices, clf, args.real_stride)
        tag = f"{args.real_slices.resolve()}:{args.real_slices.stat().st_size}:{args.real_stride}"
        names = [f"{tag}:{i}" for i in range(len(real_images))]
        loader = _array_loader(real_images)
        tokens, brain = _extract(clf, loader, names, cache, args.quiet, "real")
        sets["real"] = (tokens, brain, real_labels)
    return sets


def _subset(items: Sequence[LabelledImage], per_class: int) -> list[LabelledImage]:
    """At most ``per_class`` images of each class, drawn in a seeded random order (all when
    ``per_class`` <= 0); kept in their listed order."""
    if per_class <= 0:
        return list(items)
    order = np.random.default_rng(0).permutation(len(items))
    chosen = {id(it) for it in limit_per_class([items[i] for i in order], per_class)}
    return [it for it in items if id(it) in chosen]


def _array_loader(images: NDArray[np.float32]) -> Any:
    def load(a: int, b: int) -> NDArray[np.float32]:
        return images[a:b]

    return load


def _training_tokens(sets: dict[str, Any], with_real: bool) -> NDArray[Any]:
    parts = [sets["train"][0]] + ([sets["real"][0]] if with_real and "real" in sets else [])
    flat = [np.asarray(p).reshape(-1, p.shape[-1]) for p in parts]
    return flat[0] if len(flat) == 1 else np.concatenate(flat)


def _report(
    args: argparse.Namespace, clf: Classifier, sae: TopKSAE, cfg: SAEConfig,
    sets: dict[str, Any], history: list[dict[str, float]], seconds: float,
    val_items: Sequence[LabelledImage],
) -> dict[str, Any]:  # fmt: skip
    classes = list(clf.meta.classes)
    train_tokens = sets["train"][0]
    sample = np.asarray(train_tokens[:: max(1, len(train_tokens) // 1000)])
    report: dict[str, Any] = {
        "note": "Research use only, not for diagnosis.",
        "model": {"name": clf.meta.name, "version": clf.weights_version},
        "layer": "class_layers.relu (DenseNet169's final feature map, input of the head)",
        "config": {k: v for k, v in vars(cfg).items()},
        "contribution": "mean_ij(z_f,ij) * (W_c . scale * W_dec[f]) (logit units)",
        "mostly_outside": "share of a feature's activation mass outside the brain > 0.5",
        "training": {
            "tokens": int(np.prod(train_tokens.shape[:3])),
            "images": int(len(train_tokens)),
            "seconds": round(seconds, 1),
            "history": history,
            "train_sample": sae_metrics(sae, sample.reshape(-1, sample.shape[-1])).to_dict(),
        },
    }
    for name in ("validation", "real"):
        if name not in sets:
            continue
        tokens, brain, labels = sets[name]
        figures, table, contrib = _evaluate_set(sae, clf, tokens, brain, labels, args.top)
        report[name] = figures
        if name == "validation":
            report["training"]["dead_on_validation"] = figures["reconstruction"]["dead_fraction"]
            report["features"] = _feature_rows(table, classes)
            report["montages"] = _write_montages(args, clf, sae, sets, table, contrib, val_items)
    return report


def _write_montages(
    args: argparse.Namespace, clf: Classifier, sae: TopKSAE, sets: dict[str, Any],
    table: FeatureTable, contrib: Any, items: Sequence[LabelledImage],
) -> dict[str, list[int]]:  # fmt: skip
    tokens, _, labels = sets["validation"]
    load = _jpeg_loader(clf, items)
    out: dict[str, list[int]] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(clf.meta.classes):
        features = _class_features(contrib, labels, c, args.montage_features)
        if not features:
            continue
        rows, maps = _montage_rows(sae, tokens, table, features, 6)
        needed = sorted({i for _, idx in rows for i in idx})
        images = {i: load(i, i + 1)[0] for i in needed}
        stack = np.stack([images[i] for i in needed])
        pos = {i: k for k, i in enumerate(needed)}
        remapped = [(label, [pos[i] for i in idx]) for label, idx in rows]
        png = feature_montage(stack, maps, remapped)
        Image.fromarray(png).save(args.out / f"sae-features-{name}.png")
        out[name] = features
    return out


def report_json(report: dict[str, Any]) -> str:
    """The report as indented JSON with one line per feature (about 2,000 of them)."""
    rows = report.get("features", [])
    text = json.dumps({**report, "features": "@FEATURES@"}, indent=1)
    lines = ",\n  ".join(json.dumps(r) for r in rows)
    return text.replace('"@FEATURES@"', f"[\n  {lines}\n ]" if rows else "[]")


def _print_summary(report: dict[str, Any], out: Path) -> None:
    v = report["validation"]["reconstruction"]
    seconds = report["training"]["seconds"]
    print(f"SAE: FVU {v['fvu']:.4f}, L0 {v['l0']:.1f}, dead on validation "
          f"{v['dead_fraction']:.3f} ({v['n_dead']}) in {seconds} s")  # fmt: skip
    for name in ("validation", "real"):
        if name in report:
            for cls, row in report[name]["decision_relevant_outside_brain"].items():
                print(f"  {name} {cls}: {row['pairs_mostly_outside']:.3f} of top features "
                      f"mostly outside the brain ({int(row['pairs'])} pairs)")  # fmt: skip
    print(f"-> {out / 'sae-report.json'}")
