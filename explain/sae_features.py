"""What the SAE's features are: tokens, per-prediction contributions, per-feature figures.

Contribution of feature f to class c for one image. MONAI's head is
``logits = W @ mean_ij(F_ij) + b`` over the final ReLU's map ``F`` (h x w tokens). With the
SAE's reconstruction ``F_ij ~ scale * (sum_f z_f,ij W_dec[f] + b_dec)``,

    logit_c ~ sum_f  mean_ij(z_f,ij) * (W_c . d_f)  +  W_c . (scale * b_dec) + b_c,

``d_f = scale * W_dec[f]``; so ``contribution[f, c] = mean_ij(z_f,ij) * (W_c . d_f)`` (exact
for the reconstructed map) and its map ``z_f,ij * (W_c . d_f) / (h w)`` sums to it. The
``sae`` explanation adds the maps of the ``top`` features with the largest positive
contributions to the target class, upsampled (bilinear) to the image: non-negative.

"Outside the brain": the head mask (``inference.preprocessing.head_mask``, as
``explain.quality.head_masks_of``) shrunk by 4 % of the
side (scalp and skull, as ``explain.quality.cam_location``), averaged over each feature-map
cell; a feature's outside share on an image is ``sum z (1 - brain) / sum z``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from scipy import ndimage
from torch import nn

from explain.model_access import as_batch, evaluating, trunk_features, upsample
from explain.options import ExplainOptions
from explain.rendering import add_text, overlay
from explain.sparse_autoencoder import SAEInfo, TopKSAE, load_sae
from inference.preprocessing import head_mask
from vocabulary.errors import InputError, ModelError

FloatArray = NDArray[np.float32]
SKULL_FRACTION = 0.04


def head_linear(net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's weight (classes, d_in) and bias of MONAI DenseNet's ``class_layers.out``."""
    out = dict(net.named_modules()).get("class_layers.out")
    if not isinstance(out, nn.Linear):
        raise ModelError("the network has no linear head class_layers.out")
    return out.weight.detach().float(), out.bias.detach().float()


def feature_tokens(
    net: nn.Module, images: NDArray[Any], bf16: bool = False, batch_size: int = 32
) -> NDArray[np.float16]:
    """The final ReLU's feature map of (N, S, S) images as tokens (N, h, w, C) float16."""
    out = []
    with evaluating(net):
        for s in range(0, len(images), batch_size):
            x = as_batch(np.asarray(images[s : s + batch_size], dtype=np.float32))
            fmap = trunk_features(net, x, bf16)
            out.append(fmap.permute(0, 2, 3, 1).numpy().astype(np.float16))
    return np.concatenate(out)


def brain_masks(images: NDArray[Any], threshold: float = 0.1) -> NDArray[np.bool_]:
    """Head masks of (N, S, S) images shrunk by the skull margin (the brain, roughly)."""
    heads = np.stack([head_mask(im, threshold) for im in np.asarray(images, np.float32)])
    depth = max(1, int(round(SKULL_FRACTION * heads.shape[-1])))
    return np.stack([ndimage.binary_erosion(h, iterations=depth) for h in heads])


def grid_fractions(masks: NDArray[np.bool_], grid: tuple[int, int]) -> FloatArray:
    """Share of each feature-map cell covered by the mask: (N, h, w) in [0, 1]."""
    t = torch.from_numpy(np.asarray(masks, dtype=np.float32))[:, None]
    return F.adaptive_avg_pool2d(t, grid)[:, 0].numpy().astype(np.float32)


@dataclass(frozen=True)
class Contributions:
    """Per image: mean codes (N, F) and contributions to each class (N, F, classes)."""

    mean_codes: FloatArray
    contributions: FloatArray
    logits: FloatArray  # (N, classes) of the original map (the model's own)


@torch.no_grad()
def contributions_of(sae: TopKSAE, net: nn.Module, tokens: NDArray[Any]) -> Contributions:
    """Contributions of every feature to every class for tokens (N, h, w, C)."""
    w, b = head_linear(net)
    n = tokens.shape[0]
    flat = np.asarray(tokens).reshape(n, -1, tokens.shape[-1])
    per_class = sae.directions() @ w.t()  # (F, classes)
    means, logits = [], []
    for s in range(0, n, 64):
        x = torch.from_numpy(flat[s : s + 64].astype(np.float32))
        z = sae.encode(x.reshape(-1, x.shape[-1])).reshape(x.shape[0], x.shape[1], -1)
        means.append(z.mean(1))
        logits.append(x.mean(1) @ w.t() + b)
    zbar = torch.cat(means)
    contrib = zbar[:, :, None] * per_class[None]
    return Contributions(zbar.numpy(), contrib.numpy(), torch.cat(logits).numpy())


def top_features(contrib: FloatArray, target: NDArray[Any], top: int) -> NDArray[np.int64]:
    """Indices (N, top) of the features with the largest contribution to each target."""
    c = contrib[np.arange(len(target)), :, np.asarray(target)]
    return np.argsort(-c, axis=1)[:, :top].astype(np.int64)


@dataclass(frozen=True)
class FeatureExplanation:
    """The ``sae`` method for a batch: the summed map and the top features' own maps."""

    features: NDArray[np.int64]  # (N, top)
    contributions: FloatArray  # (N, top) to the target class (logit units)
    maps: FloatArray  # (N, top, S, S) contribution maps, >= 0
    total: FloatArray  # (N, S, S): sum of the positive top maps


@torch.no_grad()
def explain_features(
    sae: TopKSAE, net: nn.Module, x: torch.Tensor, targets: torch.Tensor, bf16: bool, top: int
) -> FeatureExplanation:
    """Top ``top`` features by contribution to each image's target class with their maps
    (upsampled to the image; negative contributions are kept in ``contributions`` but
    their maps are zero)."""
    w, _ = head_linear(net)
    size = x.shape[-1]
    fmap = trunk_features(net, x, bf16)  # (N, C, h, w)
    n, c, h, wd = fmap.shape
    z = sae.encode(fmap.permute(0, 2, 3, 1).reshape(-1, c)).reshape(n, h * wd, -1)
    weight = (sae.directions() @ w.t())[:, targets].t()  # (N, F)
    contrib = z.mean(1) * weight
    top = max(1, min(top, sae.n_features))
    idx = torch.topk(contrib, top, dim=1).indices
    picked = torch.gather(z, 2, idx[:, None, :].expand(n, h * wd, top))  # (N, hw, top)
    wsel = torch.gather(weight, 1, idx).clamp_min(0.0)  # (N, top)
    grid = (picked * wsel[:, None, :] / (h * wd)).permute(0, 2, 1).reshape(n * top, h, wd)
    maps = upsample(grid, size).clamp_min(0.0).reshape(n, top, size, size)
    return FeatureExplanation(
        features=idx.numpy().astype(np.int64),
        contributions=torch.gather(contrib, 1, idx).numpy().astype(np.float32),
        maps=maps.numpy().astype(np.float32),
        total=maps.sum(1).numpy().astype(np.float32),
    )


@functools.lru_cache(maxsize=4)
def _cached_sae(path: str, mtime_ns: int) -> tuple[TopKSAE, SAEInfo]:
    return load_sae(path)


def sae_from_file(path: str) -> tuple[TopKSAE, SAEInfo]:
    """The SAE of ``path``, loaded once per file version; ModelError when there is none."""
    if not path:
        raise ModelError(
            "the 'sae' method needs a sparse autoencoder for this model: train one with "
            "`brainxai sae-train` (or point BRAINXAI_SAE at its file)"
        )
    p = Path(path)
    if not p.is_file():
        load_sae(p)  # raises the ModelError naming the path
    return _cached_sae(str(p), p.stat().st_mtime_ns)


def sae_maps(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor, opts: ExplainOptions
) -> torch.Tensor:
    """The ``sae`` method's maps (N, S, S) for ``explain.attribution.explain``."""
    sae, _ = sae_from_file(opts.sae_path)
    top, batch_size = opts.sae_top_features, opts.batch_size
    w, _ = head_linear(net)
    if w.shape[1] != sae.d_in:
        raise ModelError(f"the SAE has {sae.d_in} inputs, the model's head {w.shape[1]}")
    parts = []
    for s in range(0, x.shape[0], batch_size):
        xs, ts = x[s : s + batch_size], targets[s : s + batch_size]
        fe = explain_features(sae, net, xs, ts, opts.bf16, top)
        parts.append(torch.from_numpy(fe.total))
    return torch.cat(parts)


@dataclass(frozen=True)
class FeatureTable:
    """Per-feature figures over an image set (n_features rows)."""

    mass: FloatArray  # total activation
    outside_share: FloatArray  # share of activation mass outside the brain (NaN if none)
    by_true_class: FloatArray  # (F, classes) mean activation per true class
    by_predicted_class: FloatArray  # (F, classes) per predicted class
    top_images: NDArray[np.int64]  # (F, m) images with the highest mean activation
    outside_by_image: FloatArray  # (N, F) outside share per image (NaN where inactive)


@torch.no_grad()
def feature_table(
    sae: TopKSAE, tokens: NDArray[Any], brain: FloatArray, labels: NDArray[Any],
    predicted: NDArray[Any], n_classes: int, m: int = 8,
) -> FeatureTable:  # fmt: skip
    """Activation mass, outside-brain share, class association and top images per feature.

    ``tokens`` (N, h, w, C); ``brain`` (N, h, w) brain fraction of each cell."""
    n = tokens.shape[0]
    flat = np.asarray(tokens).reshape(n, -1, tokens.shape[-1])
    outside = torch.from_numpy(1.0 - brain.reshape(n, -1).astype(np.float32))
    mass, out_mass, zbar = [], [], []
    for s in range(0, n, 64):
        x = torch.from_numpy(flat[s : s + 64].astype(np.float32))
        z = sae.encode(x.reshape(-1, x.shape[-1])).reshape(x.shape[0], x.shape[1], -1)
        mass.append(z.sum(1))
        out_mass.append((z * outside[s : s + 64, :, None]).sum(1))
        zbar.append(z.mean(1))
    per_img, per_img_out, zb = torch.cat(mass), torch.cat(out_mass), torch.cat(zbar)
    total = per_img.sum(0)
    share = torch.where(total > 0, per_img_out.sum(0) / total.clamp_min(1e-12), torch.nan)
    by_img = torch.where(per_img > 0, per_img_out / per_img.clamp_min(1e-12), torch.nan)
    m = max(1, min(m, n))
    return FeatureTable(
        mass=total.numpy().astype(np.float32),
        outside_share=share.numpy().astype(np.float32),
        by_true_class=_class_means(zb, labels, n_classes),
        by_predicted_class=_class_means(zb, predicted, n_classes),
        top_images=torch.topk(zb.t(), m, dim=1).indices.numpy().astype(np.int64),
        outside_by_image=by_img.numpy().astype(np.float32),
    )


def _class_means(zbar: torch.Tensor, labels: NDArray[Any], n_classes: int) -> FloatArray:
    lab = np.asarray(labels)
    cols = [
        zbar[torch.from_numpy(lab == c)].mean(0) if (lab == c).any() else
        torch.zeros(zbar.shape[1])
        for c in range(n_classes)
    ]  # fmt: skip
    return torch.stack(cols, 1).numpy().astype(np.float32)


def decision_relevant_outside(
    contrib: Contributions, table: FeatureTable, labels: NDArray[Any], classes: Sequence[str],
    top: int = 5, mostly: float = 0.5,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per true class, over correctly classified images: the top ``top`` features by positive
    contribution to the predicted class, and the share of them whose activation mass lies
    mostly (> ``mostly``) outside the brain: per (image, feature) pair on that image, and
    per distinct feature by its mean outside share over the set."""
    lab = np.asarray(labels)
    pred = contrib.logits.argmax(1)
    out: dict[str, dict[str, float]] = {}
    for c, name in enumerate(classes):
        rows = np.flatnonzero((lab == c) & (pred == c))
        pairs, weights, distinct = [], [], set()
        for i in rows:
            cc = contrib.contributions[i, :, c]
            for f in np.argsort(-cc)[:top]:
                share = table.outside_by_image[i, f]
                if cc[f] > 0 and np.isfinite(share):
                    pairs.append(float(share))
                    weights.append(float(cc[f]))
                    distinct.add(int(f))
        shares = np.array(pairs)
        dshare = table.outside_share[sorted(distinct)] if distinct else np.zeros(0)
        out[name] = {
            "correct_images": float(len(rows)),
            "pairs": float(len(pairs)),
            "pairs_mostly_outside": float((shares > mostly).mean()) if len(pairs) else 0.0,
            "contribution_weighted_outside": float(np.average(shares, weights=weights))
            if len(pairs) else 0.0,
            "distinct_features": float(len(distinct)),
            "distinct_mostly_outside": float((dshare > mostly).mean()) if distinct else 0.0,
        }  # fmt: skip
    return out


def feature_montage(
    images: NDArray[Any], maps: Sequence[NDArray[Any]], rows: Sequence[tuple[str, Sequence[int]]],
    tile: int = 96,
) -> NDArray[np.uint8]:  # fmt: skip
    """A montage RGB: one row per (label, image indices), each tile the image with the
    feature's map (``maps[row, j]``, normalised per tile) over it; the label on the first."""
    if len(rows) == 0:
        raise InputError("no features for the montage")
    width = max(len(idx) for _, idx in rows)
    canvas = np.zeros((len(rows) * tile, width * tile, 3), dtype=np.uint8)
    for r, (label, idx) in enumerate(rows):
        for j, i in enumerate(idx):
            grey = _resize(np.asarray(images[i], np.float32), tile)
            heat = _resize(np.asarray(maps[r][j], np.float32), tile)
            heat = heat / heat.max() if heat.max() > 0 else heat
            rgb = overlay(grey, heat, colorbar=False)
            if j == 0:
                rgb = add_text(rgb, [label], size=max(8, tile // 8))
            canvas[r * tile : (r + 1) * tile, j * tile : (j + 1) * tile] = rgb
    return canvas


def _resize(a: FloatArray, size: int) -> FloatArray:
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
