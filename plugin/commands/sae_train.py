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
from inference.dataset import LabelledImage, list_images, load_image, repeat_training_split
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
    p.add_argument("--train-on-real", action="store_true", help="add real slices to training")
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


def _key(clf: Classifier, names: Sequence[str]) -> str:
    h = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return f"{clf.meta.name}-{clf.version}-{clf.image_size}-{h}"


def _extract(
    clf: Classifier, load: Any, n: int, key: str, cache: Path, quiet: bool, what: str
) -> tuple[NDArray[np.float16], NDArray[np.float32]]:
    """Tokens (N, h, w, C) float16 and brain fractions (N, h, w), from the cache if there."""
    tok_file, brain_file = cache / f"{key}-tokens.npy", cache / f"{key}-brain.npy"
    if tok_file.is_file() and brain_file.is_file():
        log.info("%s tokens from the cache %s", what, tok_file)
        return np.load(tok_file, mmap_mode="r"), np.load(brain_file)
    toks, brains = [], []
    with progress_bar(n, "image", f"features ({what})", quiet) as bar:
        for s in range(0, n, 32):
            images = load(s, min(n, s + 32))
            t = feature_tokens(clf.net, images, bf16_fast())
            toks.append(t)
            brains.append(grid_fractions(brain_masks(images), t.shape[1:3]))
            bar.update(len(images))
    tokens, brain = np.concatenate(toks), np.concatenate(brains)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(tok_file, tokens)
    np.save(brain_file, brain)
    return tokens, brain


def _jpeg_loader(clf: Classifier, items: Sequence[LabelledImage]) -> Any:
    def load(a: int, b: int) -> NDArray[np.float32]:
        return np.stack([preprocess(load_image(i.path), clf.meta.preprocess).image
                         for i in items[a:b]])  # fmt: skip

    return load


def _real_slices(path: Path, clf: Classifier) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    with np.load(path) as z:
        images, labels = z["images"].astype(np.float32), z["labels"].astype(np.int64)
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
    sets = {}
    for name, part in (("train", split.train), ("validation", split.validation)):
        key = _key(clf, [str(i.path) for i in part])
        tokens, brain = _extract(clf, _jpeg_loader(clf, part), len(part), key, cache,
                                 args.quiet, name)  # fmt: skip
        sets[name] = (tokens, brain, np.array([i.label for i in part], dtype=np.int64))
    real_images = None
    if args.real_slices is not None:
        real_images, real_labels = _real_slices(args.real_slices, clf)
        key = _key(clf, [f"{args.real_slices.resolve()}:{args.real_slices.stat().st_size}"])
        loader = _array_loader(real_images)
        tokens, brain = _extract(clf, loader, len(real_images), key, cache, args.quiet, "real")
        sets["real"] = (tokens, brain, real_labels)
    train_tokens = _training_tokens(sets, args.train_on_real)
    cfg = SAEConfig(n_features=args.features, k=args.k, lr=args.lr, epochs=args.epochs,
                    batch_size=args.batch_size, max_seconds=args.max_minutes * 60)  # fmt: skip
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    start = time.monotonic()
    with progress_bar(cfg.epochs * -(-len(train_tokens) // cfg.batch_size), "batch",
                      "sae", args.quiet) as bar:  # fmt: skip
        sae, history = train_sae(train_tokens, cfg, lambda *_: bar.update(1))
    seconds = time.monotonic() - start
    report = _report(args, clf, sae, cfg, sets, history, seconds, len(train_tokens))
    sae_file = args.sae_out or sae_path_for(clf.meta.name, clf.version)
    grid = sets["validation"][0].shape[1:3]
    info = SAEInfo(clf.meta.name, clf.version, grid=(int(grid[0]), int(grid[1])),
                   extra={"config": {k: float(v) for k, v in vars(cfg).items()}})  # fmt: skip
    save_sae(sae_file, sae, info)
    report["sae_file"] = {"path": str(sae_file), "bytes": sae_file.stat().st_size}
    if not args.no_mlflow:
        bundle = resolve_model(args.model, settings.tracking_uri())
        figures = {**report["validation"]["reconstruction"], "n_features": cfg.n_features,
                   "k": cfg.k}  # fmt: skip
        version = log_sae(settings.tracking_uri(), bundle, sae_file, figures)
        report["mlflow"] = {"registered_version": version, "artifact": f"sae/{sae_file.name}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sae-report.json").write_text(json.dumps(report, indent=1))
    _print_summary(report, args.out)
    return 0


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
    sets: dict[str, Any], history: list[dict[str, float]], seconds: float, n_tokens: int,
) -> dict[str, Any]:  # fmt: skip
    classes = list(clf.meta.classes)
    train_tokens = sets["train"][0]
    sample = np.asarray(train_tokens[:: max(1, len(train_tokens) // 1000)])
    report: dict[str, Any] = {
        "note": "Research use only, not for diagnosis.",
        "model": {"name": clf.meta.name, "version": clf.version},
        "layer": "class_layers.relu (DenseNet169's final feature map, input of the head)",
        "config": {k: v for k, v in vars(cfg).items()},
        "contribution": "mean_ij(z_f,ij) * (W_c . scale * W_dec[f]) (logit units)",
        "mostly_outside": "share of a feature's activation mass outside the brain > 0.5",
        "training": {
            "tokens": int(n_tokens),
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
            report["montages"] = _write_montages(args, clf, sae, sets, table, contrib)
    return report


def _write_montages(
    args: argparse.Namespace, clf: Classifier, sae: TopKSAE, sets: dict[str, Any],
    table: FeatureTable, contrib: Any,
) -> dict[str, list[int]]:  # fmt: skip
    tokens, _, labels = sets["validation"]
    items = repeat_training_split(
        list_images(args.data, clf.meta.classes), dict(clf.meta.extra.get("options", {}))
    ).validation
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
