"""brainxai explain-eval: explanation-quality figures over a labelled image folder."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from explain.attribution import Attribution, explain
from explain.options import METHODS, ExplainOptions, parse_methods
from explain.quality import QualityOptions, randomisation_rank_corr
from explain.rendering import add_text, overlay, to_png
from explain.summary import MetricRow, summarise_method
from inference.bundle import Classifier, Prediction
from inference.dataset import LabelledImage, list_images, load_image, repeat_training_split
from plugin.analysis import classify_and_explain, measure_quality, prepare, stack, with_sae
from plugin.commands.explain import BANNER, load_classifier
from plugin.commands.progress_bar import add_quiet, progress_bar
from vocabulary.errors import InputError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_quiet(p)
    p.add_argument("--data", type=Path, required=True, help="folder with <class>/ subfolders")
    p.add_argument("--methods", default="gradcam-gxi,gradcam,saliency", help=f"of {METHODS}")
    p.add_argument("--limit", type=int, default=0, help="images per class (0 = all)")
    p.add_argument(
        "--split",
        choices=("all", "validation", "train"),
        default="all",
        help="validation/train: repeat the model's duplicate-aware training split",
    )
    p.add_argument("--model", help="bundle file or models:/ URI (default: the bundled model)")
    p.add_argument("--out", type=Path, required=True, help="report JSON path")
    p.add_argument("--steps", type=int, default=10, help="deletion/insertion curve steps")
    p.add_argument("--worst", type=int, default=6, help="worst cases saved per method")
    p.add_argument(
        "--randomisation-images",
        type=int,
        default=16,
        help="images used for the model-randomisation check (0 = skip)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--sharpen-weight",
        type=float,
        default=ExplainOptions.sharpen_weight,
        help="gradcam-gxi: Grad-CAM x (1 + W x gradient x input) (default %(default)s)",
    )


def select_items(
    data: Path, clf: Classifier, split: str, limit: int, seed: int
) -> list[LabelledImage]:
    """The images to evaluate: all, or one side of the training split, then ``limit``/class."""
    items = list_images(data, clf.meta.classes)
    if split != "all":
        log.info("hashing %d images to repeat the training split", len(items))
        parts = repeat_training_split(items, dict(clf.meta.extra.get("options", {})))
        items = list(parts.validation if split == "validation" else parts.train)
    if limit > 0:
        rng = np.random.default_rng(seed)
        chosen: list[LabelledImage] = []
        for label in range(len(clf.meta.classes)):
            of_class = [it for it in items if it.label == label]
            idx = sorted(rng.permutation(len(of_class))[:limit])
            chosen += [of_class[i] for i in idx]
        items = chosen
    if not items:
        raise InputError(f"no images selected under {data}")
    return items


@dataclass
class Worst:
    """The lowest-brain-mass cases of one method, kept with what is needed to draw them."""

    keep: int
    cases: list[tuple[float, str, int, int, NDArray[np.float32], NDArray[np.float32]]] = field(
        default_factory=list
    )

    def offer(
        self,
        mass: float,
        name: str,
        label: int,
        pred: int,
        image: NDArray[np.float32],
        heat: NDArray[np.float32],
    ) -> None:
        if self.keep <= 0:
            return
        self.cases.append((mass, name, label, pred, image.copy(), heat.copy()))
        self.cases.sort(key=lambda c: c[0])
        del self.cases[self.keep :]


@dataclass
class Collected:
    """What the pass over the images gathers, per method where it differs."""

    rows: dict[str, list[MetricRow]]
    seconds: dict[str, float]
    worst: dict[str, Worst]
    labels: list[int] = field(default_factory=list)
    preds: list[int] = field(default_factory=list)
    probe: list[tuple[NDArray[np.float32], int]] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    started = time.time()
    methods = parse_methods(args.methods)
    clf = load_classifier(args.model)
    items = select_items(args.data, clf, args.split, args.limit, args.seed)
    qopts = QualityOptions(steps=args.steps, temperature=clf.meta.temperature, seed=args.seed)
    eopts = ExplainOptions(sharpen_weight=args.sharpen_weight)
    got = _collect(args, clf, items, methods, (qopts, eopts))
    corr = _randomisation(clf, methods, got.probe, eopts)
    report = {
        "model": {"name": clf.meta.name, "version": clf.version},
        "research_use_only": True,
        "data": str(args.data),
        "split": args.split,
        "n_images": len(items),
        "accuracy": float(np.mean(np.array(got.labels) == np.array(got.preds))),
        "options": {
            "steps": args.steps,
            "limit_per_class": args.limit,
            "seed": args.seed,
            "deletion_baseline": qopts.deletion_baseline,
            "insertion_baseline": qopts.insertion_baseline,
            "road_noise": qopts.road_noise,
            "sharpen_weight": eopts.sharpen_weight,
        },
        "methods": {
            m: {
                **summarise_method(got.rows[m], clf.meta.classes, corr[m]),
                "seconds_per_image": round(got.seconds[m] / len(items), 4),
                "worst": _save_worst(got.worst[m], m, clf.meta.classes, args.out),
            }
            for m in methods
        },
        "seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    _print_summary(report["methods"])
    print(f"wrote {args.out}")
    return 0


def _collect(
    args: argparse.Namespace,
    clf: Classifier,
    items: list[Any],
    methods: tuple[str, ...],
    options: tuple[QualityOptions, ExplainOptions],
) -> Collected:
    """Explain and score every item in batches; keep the randomisation probe images."""
    qopts, eopts = options
    got = Collected({m: [] for m in methods}, dict.fromkeys(methods, 0.0),
                    {m: Worst(args.worst) for m in methods})  # fmt: skip
    n_probe = min(max(0, args.randomisation_images), len(items))
    probe_at = set(np.random.default_rng(args.seed).permutation(len(items))[:n_probe].tolist())
    bs = max(1, args.batch_size)
    bar = progress_bar(len(items), "image", "explain-eval", args.quiet)
    for start in range(0, len(items), bs):
        batch = items[start : start + bs]
        pres = prepare(clf, [load_image(it.path) for it in batch])
        images = stack(pres)
        masks = np.stack([p.head_mask for p in pres])
        prediction, maps = _explain_timed(clf, images, methods, got.seconds, eopts)
        pred = prediction.probs.argmax(axis=1)
        quality = measure_quality(clf, images, maps, masks, qopts)
        for i, it in enumerate(batch):
            got.labels.append(it.label)
            got.preds.append(int(pred[i]))
            for m in methods:
                q = quality[m][i]
                got.rows[m].append(MetricRow(it.label, int(pred[i]), q))
                got.worst[m].offer(q.brain_mass, it.path.name, it.label, int(pred[i]),
                                   images[i], maps[m].normalised[i])  # fmt: skip
        got.probe += [(images[i], int(pred[i])) for i in range(len(batch)) if start + i in probe_at]
        bar.update(len(batch))
        log.debug("explained %d/%d images", min(start + bs, len(items)), len(items))
    bar.close()
    return got


def _print_summary(methods: dict[str, dict[str, Any]]) -> None:
    for m, s in methods.items():
        print(
            f"{m}: brain_mass {s['brain_mass_mean']:.3f} (chance {s['head_fraction_mean']:.3f}) "
            f"below0.5 {s['share_brain_mass_below_0_5']:.2f} deletion {s['deletion_auc_mean']:.3f}"
            f" (random {s['deletion_auc_random_mean']:.3f}) insertion "
            f"{s['insertion_auc_mean']:.3f} (random {s['insertion_auc_random_mean']:.3f}) "
            f"ROAD deletion {s['road_deletion_auc_mean']:.3f} "
            f"(random {s['road_deletion_auc_random_mean']:.3f}) "
            f"randomisation rank corr {s['randomisation_rank_corr']}"
        )


def _explain_timed(
    clf: Classifier,
    images: NDArray[np.float32],
    methods: tuple[str, ...],
    seconds: dict[str, float],
    options: ExplainOptions,
) -> tuple[Prediction, dict[str, Attribution]]:
    """Prediction and maps, each method explained on its own so that its time is its own
    (the first method's time includes the prediction, free for a CAM method)."""
    options = with_sae(clf, methods, options)  # every method's call, not only the first
    t0 = time.perf_counter()
    prediction, maps = classify_and_explain(clf, images, methods[:1], options)
    seconds[methods[0]] += time.perf_counter() - t0
    targets = prediction.probs.argmax(axis=1)
    for m in methods[1:]:
        t0 = time.perf_counter()
        maps |= explain(clf.net, images, [m], targets, options)
        seconds[m] += time.perf_counter() - t0
    return prediction, maps


def _randomisation(
    clf: Classifier,
    methods: tuple[str, ...],
    probe: list[tuple[NDArray[np.float32], int]],
    options: ExplainOptions,
) -> dict[str, list[float]]:
    if not probe:
        return {m: [] for m in methods}
    images = np.stack([p[0] for p in probe])[:, None]
    targets = np.array([p[1] for p in probe])
    return {
        m: [
            float(v)
            for v in randomisation_rank_corr(
                clf.net, images, m, targets, with_sae(clf, [m], options)
            )
        ]
        for m in methods
    }


def _save_worst(
    worst: Worst, method: str, classes: tuple[str, ...], out: Path
) -> list[dict[str, Any]]:
    folder = out.parent / f"{out.stem}_worst"
    saved = []
    for rank, (mass, name, label, pred, image, heat) in enumerate(worst.cases, start=1):
        rgb = overlay(image, heat)
        rgb = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)  # model grid is small; enlarge
        text = [
            BANNER,
            f"{method} brain_mass {mass:.2f}",
            f"true {classes[label]} / pred {classes[pred]}",
        ]
        folder.mkdir(parents=True, exist_ok=True)
        png = folder / f"{method}_{rank:02d}_{Path(name).stem}.png"
        png.write_bytes(to_png(add_text(rgb, text)))
        saved.append(
            {
                "file": name,
                "brain_mass": mass,
                "true": classes[label],
                "predicted": classes[pred],
                "png": str(png.relative_to(out.parent)),
            }
        )
    return saved
