"""Training loop: duplicate-aware split, bf16 + channels_last on CPU, checkpoint per epoch.

The loop knows nothing about MLflow: it reports to a ``Tracker`` (see registry.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from inference.augment import training_transforms
from inference.bundle import BundleMeta, Classifier, save_bundle
from inference.calibration import fit_temperature, softmax
from inference.classification_metrics import classification_metrics
from inference.dataset import (
    LabelledImage,
    duplicate_aware_split,
    limit_per_class,
    list_images,
    load_image,
)
from inference.model import build_network
from inference.ood import fit_feature_distance, with_threshold
from inference.precision import bf16_fast
from inference.preprocessing import PreprocessConfig, preprocess
from vocabulary.errors import InputError, ModelError
from vocabulary.identity import CLASSES, MODEL_NAME

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...


@dataclass(frozen=True)
class TrainOptions:
    data_dir: Path
    work_dir: Path
    epochs: int = 14
    image_size: int = 160
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.02
    label_smoothing: float = 0.05
    val_fraction: float = 0.12
    duplicate_distance: int = 4
    seed: int = 0
    resume: bool = False
    limit_per_class: int = 0  # 0 = all images; >0 for quick runs
    threads: int = 0  # 0 = torch default
    init_from: Path | None = None  # start from these weights (a checkpoint or bundle)
    # Start from the mean of the init_from weights and these (a uniform weight soup of two
    # fine-tunes of the same start; with epochs=0 the soup is only calibrated).
    average_with: Path | None = None
    ema_decay: float = 0.0  # EMA of the weights per step (e.g. 0.998); 0 = off
    # Labelled real MR slices (``brainxai real-slices``) appended to the training side.
    real_slices: Path | None = None
    real_min_per_class: int = 300  # rarer real classes are repeated up to this many
    epoch_fraction: float = 1.0  # share of the training side drawn (at random) per epoch
    freeze: tuple[str, ...] = ()  # parameter-name prefixes kept fixed (e.g. features.conv0)
    # Learning without forgetting: keep the JPEG outputs close to this network's (a bundle
    # or checkpoint) while learning the real slices; the weight of that term (0 = off).
    distill_from: Path | None = None
    distill_weight: float = 1.0
    distill_temperature: float = 2.0
    progress: bool = True


@dataclass
class TrainResult:
    bundle_path: Path
    val_metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    val_labels: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    val_probs: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    split_info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def preprocess_images(
    items: Sequence[LabelledImage], cfg: PreprocessConfig, cache_dir: Path | None
) -> NDArray[np.float16]:
    """Preprocess every image once (cached on disk by file list and settings)."""
    if not items:
        return np.zeros((0, cfg.image_size, cfg.image_size), dtype=np.float16)
    key = hashlib.sha256(
        (repr(cfg.to_dict()) + "".join(str(i.path) for i in items)).encode()
    ).hexdigest()[:16]
    cache = cache_dir / f"images-{key}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        return np.load(cache)  # type: ignore[no-any-return]
    arr = np.stack([preprocess(load_image(i.path), cfg).image for i in items]).astype(np.float16)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, arr)
    return arr


def check_real_slices_preprocess(path: Path, z: Any, cfg: PreprocessConfig) -> None:
    """Refuse a real-slices file preprocessed otherwise than the model (its pixels would
    not mean what the network's inputs mean: wrong size, crop or normalisation)."""
    if "preprocess" not in z.files:
        raise InputError(f"{path}: no preprocessing record (not made by brainxai real-slices)")
    stored = PreprocessConfig.from_dict(json.loads(str(z["preprocess"])))
    if stored != cfg:
        raise InputError(f"{path}: preprocessed with {stored}, the model uses {cfg}")


def load_real_slices(
    path: Path, cfg: PreprocessConfig, min_per_class: int
) -> tuple[NDArray[np.float16], NDArray[np.int64]]:
    """Real slices from an ``.npz``; classes with fewer than ``min_per_class`` repeated."""
    with np.load(path) as z:
        check_real_slices_preprocess(path, z, cfg)
        images, labels = z["images"].astype(np.float16), z["labels"].astype(np.int64)
    idx = [np.arange(len(labels))]
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        if 0 < len(members) < min_per_class:
            extra = int(np.ceil(min_per_class / len(members))) - 1
            idx.extend([members] * extra)
    order = np.concatenate(idx)
    return images[order], labels[order]


def _batches(n: int, batch: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    order = rng.permutation(n)
    return [order[i : i + batch] for i in range(0, n - batch + 1, batch)] or [order]


def _logits_and_features(
    net: nn.Module, images: NDArray[np.float16], batch: int = 64
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    clf = Classifier(net, BundleMeta(), None)
    pred = clf.predict(images.astype(np.float32), batch_size=batch)
    for p in net.parameters():
        p.requires_grad_(True)
    return pred.logits, pred.features


def _weights_of(path: Path) -> dict[str, torch.Tensor]:
    """Model weights from a training checkpoint or a bundle, as float32 (loaded with
    ``weights_only=True``: a file from a bucket or elsewhere cannot run code)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(f"{path} is not a plain weights file (it holds objects or code)") from exc
    state = payload.get("model") or payload.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no model weights")
    return {k: v.float() for k, v in state.items()}


def initial_weights(path: Path, average_with: Path | None = None) -> dict[str, torch.Tensor]:
    """The weights of PATH, or their element-wise mean with AVERAGE_WITH's (a uniform
    "model soup", Wortsman et al. 2022: fine-tunes of one start lie in one basin, so their
    mean is a network too; BatchNorm statistics are averaged with the weights)."""
    weights = _weights_of(path)
    if average_with is None:
        return weights
    other = _weights_of(average_with)
    if other.keys() != weights.keys():
        raise ModelError(f"{path} and {average_with} are not the same architecture")
    return {k: (v + other[k]) / 2 if "num_batches" not in k else v for k, v in weights.items()}


def teacher_targets(opts: TrainOptions, data: TrainingData) -> NDArray[np.float32] | None:
    """Soft targets of the ``distill_from`` network on the un-augmented JPEG training images
    (softmax at ``distill_temperature``); rows of real slices are NaN (not distilled: the
    teacher is what they are meant to correct)."""
    if opts.distill_from is None:
        return None
    teacher = build_network(len(CLASSES))
    teacher.load_state_dict(_weights_of(opts.distill_from))
    n_jpeg = int(data.split_info["n_train"])
    logits = plain_logits(teacher, data.x_train[:n_jpeg])
    soft = softmax(logits, opts.distill_temperature).astype(np.float32)
    out = np.full((len(data.x_train), len(CLASSES)), np.nan, np.float32)
    out[:n_jpeg] = soft
    agree = float((logits.argmax(1) == data.y_train[:n_jpeg]).mean()) if n_jpeg else 0.0
    log.info("teacher %s: %.4f of the JPEG training images right", opts.distill_from, agree)
    return out


def _batch_loss(
    out: torch.Tensor, yb: torch.Tensor, soft: torch.Tensor | None, opts: TrainOptions
) -> torch.Tensor:
    """Cross-entropy, plus the distillation term (KL to the teacher's soft targets, times
    T squared as in Hinton et al. 2015) on the rows that have targets."""
    logits = out.float()
    loss = F.cross_entropy(logits, yb, label_smoothing=opts.label_smoothing)
    if soft is None or opts.distill_weight <= 0:
        return loss
    rows = ~torch.isnan(soft[:, 0])
    if not bool(rows.any()):
        return loss
    t = opts.distill_temperature
    log_p = F.log_softmax(logits[rows] / t, dim=1)
    kl = F.kl_div(log_p, soft[rows], reduction="batchmean")
    return loss + opts.distill_weight * t * t * kl


def _checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


@dataclass(frozen=True)
class TrainingData:
    """Preprocessed images and labels of both sides of the duplicate-aware split."""

    x_train: NDArray[np.float16]
    y_train: NDArray[np.int64]
    x_val: NDArray[np.float16]
    y_val: NDArray[np.int64]
    split_info: dict[str, Any]
    preprocess: PreprocessConfig


def prepare_data(opts: TrainOptions) -> TrainingData:
    """The duplicate-aware split of ``opts.data_dir``, preprocessed (cached in work_dir)."""
    work = Path(opts.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    items = limit_per_class(list_images(opts.data_dir), opts.limit_per_class)
    split = duplicate_aware_split(items, opts.val_fraction, opts.seed, opts.duplicate_distance)
    split_info = {
        "n_train": len(split.train),
        "n_val": len(split.validation),
        "n_groups": split.n_groups,
        "n_in_duplicate_groups": split.n_duplicates,
        "duplicate_distance_bits": opts.duplicate_distance,
    }
    log.info("split: %s", split_info)
    cfg = PreprocessConfig(image_size=opts.image_size)
    x_train = preprocess_images(split.train, cfg, work / "cache")
    x_val = preprocess_images(split.validation, cfg, work / "cache")
    y_train = np.array([i.label for i in split.train], dtype=np.int64)
    y_val = np.array([i.label for i in split.validation], dtype=np.int64)
    if opts.real_slices is not None:
        x_real, y_real = load_real_slices(opts.real_slices, cfg, opts.real_min_per_class)
        x_train = np.concatenate([x_train, x_real])
        y_train = np.concatenate([y_train, y_real])
        split_info["n_real_train"] = int(len(y_real))
    return TrainingData(x_train, y_train, x_val, y_val, split_info, cfg)


def train(opts: TrainOptions, tracker: Tracker | None = None) -> TrainResult:
    """Train DenseNet169 from scratch and write a calibrated bundle to work_dir/model.pt."""
    started = time.time()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    data = prepare_data(opts)
    if tracker is not None:
        params = {k: str(v) for k, v in asdict(opts).items()}
        tracker.log_params({**params, **{k: str(v) for k, v in data.split_info.items()}})
    torch.manual_seed(opts.seed)
    net = build_network(len(CLASSES))
    fitted = fit_network(net, data, opts, tracker, _product_logits)
    return _finish(
        fitted.net,
        opts,
        data.preprocess,
        (data.x_train, data.y_train, data.x_val, data.y_val),
        fitted.history,
        data.split_info,
        started,
    )


LogitsFn = Callable[[nn.Module, NDArray[np.float16]], NDArray[np.float32]]


@dataclass(frozen=True)
class FittedNetwork:
    net: nn.Module  # the final weights (EMA or raw, see _pick_final), in eval mode
    history: list[dict[str, float]]
    stopped_by_budget: bool = False


def _product_logits(net: nn.Module, images: NDArray[np.float16]) -> NDArray[np.float32]:
    return _logits_and_features(net, images)[0]


def plain_logits(
    net: nn.Module, images: NDArray[np.float16], batch: int = 64
) -> NDArray[np.float32]:
    """Logits of any network (bf16 autocast where fast, as in training), in eval mode."""
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(images[start : start + batch].astype(np.float32))[:, None]
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_fast()):
                out.append(net(x).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def fit_network(
    net: nn.Module,
    data: TrainingData,
    opts: TrainOptions,
    tracker: Tracker | None,
    logits_fn: LogitsFn = plain_logits,
    budget_seconds: float = 0.0,
) -> FittedNetwork:
    """The training loop (AdamW, one-cycle schedule, augmentation, optional EMA), with a
    checkpoint per epoch in work_dir; ``budget_seconds`` > 0 stops training at the first
    batch past the budget (that epoch is validated and kept; the schedule stays the one
    planned for ``opts.epochs``)."""
    deadline = time.monotonic() + budget_seconds if budget_seconds > 0 else math.inf
    x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if opts.init_from is None and (opts.average_with is not None or opts.epochs == 0):
        raise InputError("averaging weights or --epochs 0 needs --init-from weights")
    if opts.init_from is not None:
        net.load_state_dict(initial_weights(opts.init_from, opts.average_with))
    if opts.epochs == 0:  # calibrate the start weights as they are (e.g. a weight soup)
        return FittedNetwork(net.eval(), [])
    optim, sched = _optimiser(net, opts, len(x_train))
    for name, param in net.named_parameters():
        if opts.freeze and name.startswith(opts.freeze):
            param.requires_grad_(False)
    ema = _ema_of(net, opts.ema_decay)
    Path(opts.work_dir).mkdir(parents=True, exist_ok=True)
    ckpt_path = Path(opts.work_dir) / "checkpoint.pt"
    history: list[dict[str, float]] = []
    start_epoch = 0
    if opts.resume and ckpt_path.is_file():
        history, start_epoch = _resume(ckpt_path, net, ema, optim, sched)
    aug = training_transforms(opts.image_size)
    soft = teacher_targets(opts, data)
    stopped = False
    for epoch in range(start_epoch, opts.epochs):
        row = _train_epoch(
            net, optim, sched, aug, (x_train, y_train, soft), opts, epoch, ema, deadline
        )
        row.update(_val_row(net, x_val, y_val, "", logits_fn))
        if ema is not None:
            row.update(_val_row(ema.module, x_val, y_val, "ema_", logits_fn))
        history.append(row)
        log.info("epoch %d: %s", epoch + 1, row)
        if tracker is not None:
            tracker.log_metrics(row, step=epoch + 1)
        state = {"model": net.state_dict(), "optim": optim.state_dict(),
                 "sched": sched.state_dict(),
                 "ema": ema.state_dict() if ema is not None else None,
                 "history": history, "epoch": epoch}  # fmt: skip
        _checkpoint(ckpt_path, state)
        if "epoch_share" in row:
            log.info("budget of %.0f s spent in epoch %d", budget_seconds, epoch + 1)
            stopped = True
            break
    final = _pick_final(net, ema, history).eval()
    return FittedNetwork(final, history, stopped)


def _optimiser(
    net: nn.Module, opts: TrainOptions, n_train: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a one-cycle schedule (20 % warm-up) over the planned epochs."""
    optim = torch.optim.AdamW(net.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    full_steps = max(1, n_train // opts.batch_size)
    steps_per_epoch = max(1, int(full_steps * min(1.0, opts.epoch_fraction)))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optim, max_lr=opts.lr, total_steps=opts.epochs * steps_per_epoch, pct_start=0.2
    )
    return optim, sched


def _resume(
    ckpt_path: Path,
    net: nn.Module,
    ema: AveragedModel | None,
    optim: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[list[dict[str, float]], int]:
    """Load the last checkpoint into the training state; (history, next epoch)."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    net.load_state_dict(ckpt["model"])
    if ema is not None and ckpt.get("ema") is not None:
        ema.load_state_dict(ckpt["ema"])
    optim.load_state_dict(ckpt["optim"])
    sched.load_state_dict(ckpt["sched"])
    start_epoch = int(ckpt["epoch"]) + 1
    log.info("resumed from epoch %d", start_epoch)
    return list(ckpt["history"]), start_epoch


def _ema_of(net: nn.Module, decay: float) -> AveragedModel | None:
    """An EMA copy of the network (weights and BatchNorm buffers), or None when off."""
    if decay <= 0:
        return None
    avg_fn = get_ema_multi_avg_fn(decay)  # type: ignore[no-untyped-call]
    return AveragedModel(net, multi_avg_fn=avg_fn, use_buffers=True)


def _val_row(
    net: nn.Module,
    x_val: NDArray[np.float16],
    y_val: NDArray[np.int64],
    prefix: str,
    logits_fn: LogitsFn,
) -> dict[str, float]:
    if not len(y_val):
        return {f"{prefix}val_acc": 0.0, f"{prefix}val_loss": 0.0}
    logits = logits_fn(net, x_val)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y_val)).item()
    return {
        f"{prefix}val_acc": float((logits.argmax(1) == y_val).mean()),
        f"{prefix}val_loss": float(loss),
    }


def _pick_final(
    net: nn.Module, ema: AveragedModel | None, history: list[dict[str, float]]
) -> nn.Module:
    """The EMA weights unless the raw weights did better on validation in the last epoch."""
    if ema is None or not history:
        return net
    last = history[-1]
    if last.get("ema_val_acc", 0.0) >= last.get("val_acc", 0.0):
        log.info("using the EMA weights (val acc %.4f)", last.get("ema_val_acc", 0.0))
        final: nn.Module = ema.module
        return final
    return net


def _train_epoch(
    net: nn.Module,
    optim: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    aug: Any,
    data: tuple[NDArray[np.float16], NDArray[np.int64], NDArray[np.float32] | None],
    opts: TrainOptions,
    epoch: int,
    ema: AveragedModel | None = None,
    deadline: float = math.inf,
) -> dict[str, float]:
    """One epoch; stops at the first batch past DEADLINE (then ``epoch_share`` says how much
    of the epoch ran). ``data`` is (images, labels, teacher soft targets or None)."""
    x, y, soft = data
    net.train()
    rng = np.random.default_rng(opts.seed * 1000 + epoch)
    torch.manual_seed(opts.seed * 1000 + epoch)
    batches = _batches(len(x), opts.batch_size, rng)
    if opts.epoch_fraction < 1.0:
        batches = batches[: max(1, int(len(batches) * opts.epoch_fraction))]
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{opts.epochs}", disable=not opts.progress)
    loss_sum, correct, seen = 0.0, 0, 0
    for idx in bar:
        if time.monotonic() > deadline:
            break
        xb = torch.stack([aug(torch.from_numpy(x[i].astype(np.float32))[None]) for i in idx])
        xb = xb.as_tensor() if hasattr(xb, "as_tensor") else xb
        xb = xb.contiguous(memory_format=torch.channels_last)
        yb = torch.from_numpy(y[idx])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_fast()):
            out = net(xb)
        loss = _batch_loss(out, yb, None if soft is None else torch.from_numpy(soft[idx]), opts)
        optim.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optim.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(net)
        loss_sum += float(loss.item()) * len(idx)
        correct += int((out.argmax(1) == yb).sum().item())
        seen += len(idx)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    row = {
        "train_loss": loss_sum / max(1, seen),
        "train_acc": correct / max(1, seen),
        "lr": float(sched.get_last_lr()[0]),
    }
    planned = sum(len(b) for b in batches)
    if seen < planned:
        row["epoch_share"] = seen / planned
    return row


def _finish(
    net: nn.Module,
    opts: TrainOptions,
    cfg: PreprocessConfig,
    data: tuple[NDArray[np.float16], NDArray[np.int64], NDArray[np.float16], NDArray[np.int64]],
    history: list[dict[str, float]],
    split_info: dict[str, Any],
    started: float,
) -> TrainResult:
    x_train, y_train, x_val, y_val = data
    net.eval()
    val_logits, val_feats = _logits_and_features(net, x_val)
    temperature = fit_temperature(val_logits, y_val) if len(y_val) else 1.0
    probs = softmax(val_logits, temperature)
    metrics = classification_metrics(y_val, probs, CLASSES)
    _, train_feats = _logits_and_features(net, x_train)
    ood = fit_feature_distance(train_feats, y_train)
    ood = with_threshold(ood, ood.score(val_feats), 99.0)
    seconds = time.time() - started
    flat = {
        "val_accuracy": metrics["accuracy"],
        "val_macro_f1": metrics["macro_f1"],
        "val_macro_auc": metrics["macro_auc"],
        "val_ece": metrics["ece"],
        "temperature": temperature,
    }
    meta = BundleMeta(
        name=MODEL_NAME,
        version=time.strftime("%Y%m%d%H%M", time.gmtime()),
        classes=CLASSES,
        preprocess=cfg,
        temperature=temperature,
        metrics=flat,
        extra={
            "split": split_info,
            "epochs": opts.epochs,
            "train_seconds": round(seconds),
            "history": history,
            "options": {k: str(v) for k, v in asdict(opts).items()},
        },
    )
    path = Path(opts.work_dir) / "model.pt"
    save_bundle(path, net, meta, ood)
    return TrainResult(
        bundle_path=path,
        val_metrics=metrics,
        history=history,
        val_labels=y_val,
        val_probs=probs,
        split_info=split_info,
        seconds=seconds,
    )


def with_epochs(opts: TrainOptions, epochs: int) -> TrainOptions:
    return replace(opts, epochs=epochs)
