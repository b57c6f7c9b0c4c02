"""How good is a map? Brain mass, deletion/insertion curves, model randomisation.

- ``brain_mass``: share of the positive attribution inside the head mask (a model looking
  at the background, text or the skull outline scores low; chance = head fraction).
- ``deletion_insertion``: target-class probability as the most important pixels are
  removed (deletion, lower area = more faithful) or revealed (insertion, higher = better),
  after Petsiuk et al. 2018 (RISE), reported next to the same curves for a random map.
- ``road_deletion_auc``: the deletion curve (most relevant first) with the removed pixels
  imputed from their neighbours (ROAD, Rong et al. 2022; explain.imputation) instead of a
  constant, so the curve measures lost information, not out-of-distribution images. It
  runs from 0 to (steps - 1) / steps removed (all removed leaves nothing to impute from),
  its area divided by that span; next to it the same curve of the random map.
- ``randomisation_rank_corr``: Spearman correlation between a method's maps from the
  model and from a copy whose top layers are re-initialised (Adebayo et al. 2018);
  a method that explains the model, not the image, gives a low correlation.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import ndimage, stats
from torch import nn

from explain.attribution import Attribution, explain
from explain.imputation import linear_imputation
from explain.model_access import as_batch, as_targets, evaluating, target_probability
from explain.options import ExplainOptions
from inference.precision import bf16_fast
from inference.preprocessing import head_mask as image_head_mask
from vocabulary.errors import InputError

FloatArray = NDArray[np.float32]
BoolArray = NDArray[np.bool_]

BASELINES = ("zero", "blur", "mean")
RANDOMISED_LAYERS = ("class_layers.out", "features.norm5", "features.denseblock4")


@dataclass(frozen=True)
class QualityOptions:
    """``steps`` curve points beyond the endpoints (cost: about 2 x steps forwards per map)."""

    steps: int = 8
    deletion_baseline: str = "zero"
    insertion_baseline: str = "blur"
    blur_sigma: float = 0.05  # fraction of the image side
    random_map: bool = True
    bf16: bool = field(default_factory=bf16_fast)  # emulated bf16 is ~8x slower
    batch_size: int = 64
    temperature: float = 1.0
    mask_threshold: float = 0.1
    seed: int = 0
    road: bool = True  # ROAD deletion curves too (steps - 1 more forwards per map)
    road_noise: float = 0.01  # imputation noise, in units of the [0, 1] image


@dataclass(frozen=True)
class QualityMetrics:
    brain_mass: float
    deletion_auc: float
    insertion_auc: float
    deletion_auc_random: float
    insertion_auc_random: float
    head_fraction: float = 0.0  # chance level of brain_mass
    road_deletion_auc: float = float("nan")
    road_deletion_auc_random: float = float("nan")

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def brain_mass(attribution_map: NDArray[Any], head_mask: NDArray[np.bool_]) -> float:
    """Share of positive attribution inside the mask; a map without any scores 0."""
    m = np.asarray(attribution_map, dtype=np.float64)
    mask = np.asarray(head_mask, dtype=bool)
    if m.shape != mask.shape:
        raise InputError(f"map {m.shape} and mask {mask.shape} differ in shape")
    pos = np.clip(m, 0.0, None)
    total = float(pos.sum())
    return float(pos[mask].sum() / total) if total > 0 else 0.0


def cam_location(
    attribution_map: NDArray[Any], head_mask: NDArray[np.bool_], skull: float = 0.04
) -> tuple[float, tuple[float, float]]:
    """(share inside the brain, centroid as (row, column) shares of the side) of a map.

    The brain is approximated by the head mask shrunk by ``skull`` of the image side
    (scalp and skull); on skull-stripped images this trims the cortex a little too.
    """
    m = np.clip(np.asarray(attribution_map, dtype=np.float64), 0.0, None)
    mask = np.asarray(head_mask, dtype=bool)
    depth = max(1, int(round(skull * mask.shape[0])))
    brain = ndimage.binary_erosion(mask, iterations=depth)
    total = float(m.sum())
    if total <= 0:
        return 0.0, (0.5, 0.5)
    rows, cols = np.indices(m.shape)
    side = float(max(m.shape))
    centroid = (float((m * rows).sum() / total / side), float((m * cols).sum() / total / side))
    return float(m[brain].sum() / total), centroid


def head_masks_of(images: FloatArray, threshold: float = 0.1) -> BoolArray:
    """Head masks derived from the (N, S, S) images themselves."""
    return np.stack([image_head_mask(im, threshold) for im in images])


def _baseline(image: FloatArray, kind: str, sigma: float) -> FloatArray:
    if kind == "zero":
        return np.zeros_like(image)
    if kind == "mean":
        return np.full_like(image, float(image.mean()))
    if kind == "blur":
        blurred: FloatArray = ndimage.gaussian_filter(image, sigma=sigma * image.shape[-1])
        return blurred.astype(np.float32)
    raise InputError(f"unknown baseline {kind!r}; choose from {BASELINES}")


def _ranks(attribution_map: NDArray[Any], rng: np.random.Generator) -> NDArray[np.int64]:
    """Rank of every pixel, 0 = most important; ties broken at random."""
    flat = np.asarray(attribution_map, dtype=np.float64).ravel()
    order = np.lexsort((rng.random(flat.size), -flat))
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks.reshape(np.shape(attribution_map))


def _curve_images(
    image: FloatArray,
    ranks: NDArray[np.int64],
    base_del: FloatArray,
    base_ins: FloatArray,
    opts: QualityOptions,
    rng: np.random.Generator,
) -> FloatArray:
    """Intermediate deletion, insertion and (with ``road``) ROAD deletion images,
    ((2 or 3) * (steps - 1), S, S)."""
    n = image.size
    steps = max(2, opts.steps)
    dels, ins, road = [], [], []
    for k in range(1, steps):
        top = ranks < round(n * k / steps)
        dels.append(np.where(top, base_del, image))
        ins.append(np.where(top, image, base_ins))
        if opts.road:
            road.append(linear_imputation(image, top, opts.road_noise, rng))
    return np.stack(dels + ins + road).astype(np.float32)


def _auc(points: NDArray[Any]) -> float:
    """Mean height of a curve over equally spaced points (area over a unit span)."""
    xs = np.linspace(0.0, 1.0, len(points))
    return float(np.trapezoid(points, xs))


def _curve_inputs(
    image: FloatArray, maps: Sequence[NDArray[Any]], opts: QualityOptions, rng: np.random.Generator
) -> FloatArray:
    """The images whose target probability draws the curves of ``maps`` over one image:
    the image, the two baselines, then each map's intermediate deletion/insertion images."""
    sigma = opts.blur_sigma
    base_del = _baseline(image, opts.deletion_baseline, sigma)
    base_ins = _baseline(image, opts.insertion_baseline, sigma)
    parts = [np.stack([image, base_del, base_ins])]
    parts += [_curve_images(image, _ranks(m, rng), base_del, base_ins, opts, rng) for m in maps]
    return np.concatenate(parts)


Aucs = tuple[float, float, float]  # deletion, insertion, ROAD deletion (NaN without road)


def _curve_aucs(p: NDArray[Any], n_maps: int, opts: QualityOptions) -> list[Aucs]:
    """(deletion, insertion, ROAD deletion AUC) per map from ``_curve_inputs``' probabilities."""
    steps = max(2, opts.steps)
    p_img, p_del, p_ins = float(p[0]), float(p[1]), float(p[2])
    out = []
    per_map = (3 if opts.road else 2) * (steps - 1)
    for j in range(n_maps):
        mid = p[3 + j * per_map : 3 + (j + 1) * per_map]
        deletion = np.concatenate([[p_img], mid[: steps - 1], [p_del]])
        insertion = np.concatenate([[p_ins], mid[steps - 1 : 2 * (steps - 1)], [p_img]])
        road = float("nan")
        if opts.road:
            road = _auc(np.concatenate([[p_img], mid[2 * (steps - 1) :]]))
        out.append((_auc(deletion), _auc(insertion), road))
    return out


def _probabilities(
    net: nn.Module, batches: Sequence[FloatArray], targets: Sequence[int], opts: QualityOptions
) -> list[NDArray[np.float32]]:
    """Target probability of every curve image, all images' batches in one pass."""
    x = as_batch(np.concatenate(batches))
    t = torch.from_numpy(np.repeat(np.asarray(targets, np.int64), [len(b) for b in batches]))
    p = target_probability(net, x, t, opts.bf16, opts.batch_size, opts.temperature).numpy()
    return np.split(p, np.cumsum([len(b) for b in batches])[:-1])


def _curves(
    net: nn.Module,
    image: FloatArray,
    maps: Sequence[NDArray[Any]],
    target: int,
    opts: QualityOptions,
    rng: np.random.Generator,
) -> list[Aucs]:
    """(deletion, insertion, ROAD deletion AUC) for each map of one image, in one pass."""
    (p,) = _probabilities(net, [_curve_inputs(image, maps, opts, rng)], [target], opts)
    return _curve_aucs(p, len(maps), opts)


def deletion_insertion(
    net: nn.Module,
    image: NDArray[Any],
    attribution_map: NDArray[Any],
    target: int,
    options: QualityOptions | None = None,
) -> tuple[float, float]:
    """(deletion AUC, insertion AUC) of one (S, S) image in [0, 1] and its map."""
    opts = options or QualityOptions()
    img = np.asarray(image, dtype=np.float32).reshape(np.shape(attribution_map))
    rng = np.random.default_rng(opts.seed)
    with evaluating(net):
        d, i, _ = _curves(net, img, [attribution_map], target, replace(opts, road=False), rng)[0]
    return d, i


def road_deletion(
    net: nn.Module,
    image: NDArray[Any],
    attribution_map: NDArray[Any],
    target: int,
    options: QualityOptions | None = None,
) -> float:
    """ROAD deletion AUC (most relevant first, imputed pixels) of one image and its map."""
    opts = replace(options or QualityOptions(), road=True)
    img = np.asarray(image, dtype=np.float32).reshape(np.shape(attribution_map))
    rng = np.random.default_rng(opts.seed)
    with evaluating(net):
        return _curves(net, img, [attribution_map], target, opts, rng)[0][2]


def random_deletion_insertion(
    net: nn.Module, image: NDArray[Any], target: int, options: QualityOptions | None = None
) -> tuple[float, float]:
    """The same curves for a uniformly random map (the reference level)."""
    opts = options or QualityOptions()
    img = np.asarray(image, dtype=np.float32)
    img = img.reshape(img.shape[-2:])
    rng = np.random.default_rng(opts.seed)
    opts = replace(opts, road=False)
    with evaluating(net):
        d, i, _ = _curves(net, img, [rng.random(img.shape)], target, opts, rng)[0]
    return d, i


def quality_metrics(
    net: nn.Module,
    images: NDArray[Any],
    attributions: Mapping[str, Attribution],
    head_masks: NDArray[np.bool_] | None = None,
    options: QualityOptions | None = None,
) -> dict[str, list[QualityMetrics]]:
    """Metrics of every map of a batch, per method; one batched pass for all images.

    The random-map curves and the curve endpoints are shared by all methods. Cost per
    image: about 3 + k * (steps - 1) * (methods + 1) forwards (k = 3 with ROAD, else 2),
    e.g. 66 for two methods at 8 steps with ROAD.
    """
    opts = options or QualityOptions()
    imgs = np.asarray(images, dtype=np.float32).reshape(-1, *np.shape(images)[-2:])
    masks = head_masks_of(imgs, opts.mask_threshold) if head_masks is None else head_masks
    names = list(attributions)
    out: dict[str, list[QualityMetrics]] = {n: [] for n in names}
    batches = []
    for i, img in enumerate(imgs):
        rng = np.random.default_rng([opts.seed, i])
        maps = [attributions[n].raw[i] for n in names]
        if opts.random_map:
            maps.append(rng.random(img.shape))
        batches.append(_curve_inputs(img, maps, opts, rng))
    targets = [int(v) for v in attributions[names[0]].targets[: len(imgs)]]
    with evaluating(net):
        probs = _probabilities(net, batches, targets, opts) if batches else []
    n_maps = len(names) + int(opts.random_map)
    for i, p in enumerate(probs):
        aucs = _curve_aucs(p, n_maps, opts)
        nan = float("nan")
        rand = aucs[-1] if opts.random_map else (nan, nan, nan)
        frac = float(np.mean(masks[i]))
        for n, (d, ins, road) in zip(names, aucs, strict=False):
            mass = brain_mass(attributions[n].raw[i], masks[i])
            out[n].append(QualityMetrics(mass, d, ins, rand[0], rand[1], frac, road, rand[2]))
    return out


@dataclass(frozen=True)
class RandomisationOptions:
    """Layers re-initialised together (the classifier and the top of the trunk)."""

    layers: tuple[str, ...] = RANDOMISED_LAYERS
    seed: int = 0


def randomised_copy(net: nn.Module, options: RandomisationOptions | None = None) -> nn.Module:
    """A deep copy whose named layers get fresh random weights (cascading from the top)."""
    opts = options or RandomisationOptions()
    twin = copy.deepcopy(net).eval()
    modules = dict(twin.named_modules())
    missing = [name for name in opts.layers if name not in modules]
    if missing:
        raise InputError(f"no layer(s) {missing} in the network")
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(opts.seed)
        for name in opts.layers:
            for sub in modules[name].modules():
                reset = getattr(sub, "reset_parameters", None)
                if callable(reset):
                    reset()
    return twin


def spearman(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Spearman rank correlation of two maps (0 when either is constant)."""
    ra = stats.rankdata(np.ravel(a))
    rb = stats.rankdata(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def randomisation_rank_corr(
    net: nn.Module,
    images: Any,
    method: str,
    targets: Any = None,
    options: ExplainOptions | None = None,
    randomisation: RandomisationOptions | None = None,
) -> NDArray[np.float64]:
    """Per-image Spearman correlation of the raw maps of ``net`` and a randomised copy.

    Both use the same targets (by default the original model's predictions).
    """
    x = as_batch(images)
    t = as_targets(targets, x.shape[0])
    original = explain(net, x, [method], t, options)[method]
    twin = randomised_copy(net, randomisation)
    randomised = explain(twin, x, [method], original.targets, options)[method]
    return np.array(
        [spearman(a, b) for a, b in zip(original.raw, randomised.raw, strict=True)],
        dtype=np.float64,
    )
