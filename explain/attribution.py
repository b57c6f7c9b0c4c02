"""``explain``: batched attribution maps with a per-sample target class.

Every method returns an ``Attribution`` at input resolution: ``raw`` in the method's own
units and ``normalised`` to [0, 1] for display and for the quality metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from explain import cam, gradients, occlusion, sae_features
from explain.model_access import as_batch, as_targets, evaluating, logits_of, to_numpy
from explain.options import (
    CAM_METHODS,
    CAM_PASS_METHODS,
    GRADIENT_METHODS,
    SHARPENED_CAM,
    ExplainOptions,
    parse_methods,
)

log = logging.getLogger(__name__)

FloatMaps = NDArray[np.float32]


@dataclass(frozen=True)
class Attribution:
    """Maps of one method for a batch: raw and normalised (N, S, S) float32."""

    method: str
    raw: FloatMaps
    normalised: FloatMaps
    targets: NDArray[np.int64]
    # Head outputs of the Grad-CAM pass (logits (N, C), pooled features (N, D)) when a CAM
    # method ran: callers can reuse them instead of a second forward pass.
    logits: NDArray[np.float32] | None = None
    pooled: NDArray[np.float32] | None = None


def normalise(raw: FloatMaps, method: str, clip_percentile: float = 99.5) -> FloatMaps:
    """Per-map scaling to [0, 1]; a constant map becomes zero.

    CAMs are min-max scaled (as in pytorch-grad-cam: Grad-CAM++ is positive everywhere).
    Gradient maps are spiky, so they are divided by a high percentile and clipped.
    Occlusion keeps only positive evidence (hiding the pixel lowers the probability),
    divided by its maximum.
    """
    flat = raw.reshape(raw.shape[0], -1).astype(np.float64)
    if method in CAM_METHODS:
        lo = flat.min(axis=1, keepdims=True)
        hi = flat.max(axis=1, keepdims=True)
    else:
        flat = np.clip(flat, 0.0, None)
        lo = np.zeros((flat.shape[0], 1))
        if method in GRADIENT_METHODS:
            hi = np.percentile(flat, clip_percentile, axis=1, keepdims=True)
        else:
            hi = flat.max(axis=1, keepdims=True)
    span = hi - lo
    out = np.clip((flat - lo) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    out[span[:, 0] <= 0] = 0.0
    result: FloatMaps = out.reshape(raw.shape).astype(np.float32)
    return result


def explain(
    net: nn.Module,
    images: Any,
    methods: str | Sequence[str],
    targets: Any = None,
    options: ExplainOptions | None = None,
) -> dict[str, Attribution]:
    """Attribution maps of ``images`` (N, 1, S, S) in [0, 1] for each method.

    ``targets`` are per-sample class indices (a scalar applies to all); by default each
    sample's predicted class. The network is put in eval mode for the call.
    """
    opts = options or ExplainOptions()
    names = parse_methods(methods)
    x = as_batch(images)
    t = as_targets(targets, x.shape[0])
    maps: dict[str, torch.Tensor] = {}
    head: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None
    with evaluating(net):
        cams = [n for n in names if n in CAM_PASS_METHODS]
        if cams:
            t, head = _cam_maps(net, x, t, opts, cams, "saliency" in names, maps)
        if t is None:
            t = logits_of(net, x, opts.bf16, opts.batch_size).argmax(1)
        for name in names:
            if name not in maps:
                maps[name] = _gradient_map(net, x, t, opts, name)
    target_arr = t.numpy().astype(np.int64)
    result = {}
    for name in names:
        raw = to_numpy(maps[name])
        norm = normalise(raw, name, opts.saliency_clip_percentile)
        logits, pooled = head if head is not None else (None, None)
        result[name] = Attribution(name, raw, norm, target_arr, logits, pooled)
    return result


def _gradient_map(
    net: nn.Module, x: torch.Tensor, t: torch.Tensor, opts: ExplainOptions, name: str
) -> torch.Tensor:
    if name == "saliency":
        return gradients.saliency(net, x, t, opts)
    if name == "smoothgrad":
        return gradients.smoothgrad(net, x, t, opts)
    if name == "smoothgrad-sq":
        return gradients.smoothgrad(net, x, t, opts, squared=True)
    if name == "gradinput":
        return gradients.gradient_x_input(net, x, t, opts)
    if name == "sae":
        return sae_features.sae_maps(net, x, t, opts)
    return occlusion.occlusion(net, x, t, opts)


def _cam_maps(
    net: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor | None,
    opts: ExplainOptions,
    cams: Sequence[str],
    saliency: bool,
    maps: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, tuple[NDArray[np.float32], NDArray[np.float32]]]:
    """CAM maps into ``maps``, with saliency and the sharpened Grad-CAM from the final
    layer's pass when that pass also takes the input gradients; the targets and the head
    outputs (logits, pooled features) of the first pass."""
    sharpened = SHARPENED_CAM in cams
    plain = [n for n in cams if n != SHARPENED_CAM]
    at_block3 = {cam.cam_spec(n)[1] for n in plain}
    final = sharpened or False in at_block3

    def block3_pass(targets: torch.Tensor | None) -> cam.HeadGradients:
        return _chunked(
            x, targets, opts, lambda xs, tt: cam.block3_gradients(net, xs, tt, opts.bf16)
        )

    if final:  # the final layer's pass, with the input gradients when a map needs them
        hg, grad = _head_gradients_batched(net, x, t, opts, saliency or sharpened)
        if grad is not None and saliency:
            maps["saliency"] = grad.abs()
        if grad is not None and sharpened:
            maps[SHARPENED_CAM] = cam.sharpened_gradcam(hg, grad, x[:, 0], opts.sharpen_weight)
    else:  # block 3 only
        hg = block3_pass(t)
    t = hg.targets
    head = (to_numpy(hg.logits), to_numpy(hg.pooled_features()))
    _fill(maps, plain, not final, hg, x.shape[-1])
    if final and True in at_block3:  # block 3 as well, for the first pass's targets
        _fill(maps, plain, True, block3_pass(t), x.shape[-1])
    return t, head


def _fill(
    maps: dict[str, torch.Tensor],
    cams: Sequence[str],
    block3: bool,
    hg: cam.HeadGradients,
    size: int,
) -> None:
    for name in cams:
        fn, at_block3 = cam.cam_spec(name)
        if at_block3 == block3:
            maps[name] = fn(hg, size)


def _chunked(
    x: torch.Tensor,
    t: torch.Tensor | None,
    opts: ExplainOptions,
    fn: Callable[[torch.Tensor, torch.Tensor | None], cam.HeadGradients],
) -> cam.HeadGradients:
    parts = [
        fn(x[s : s + opts.batch_size], None if t is None else t[s : s + opts.batch_size])
        for s in range(0, x.shape[0], opts.batch_size)
    ]
    return _merge(parts)


def _merge(parts: Sequence[cam.HeadGradients]) -> cam.HeadGradients:
    if len(parts) == 1:
        return parts[0]
    pooled = [p.pooled for p in parts]
    return cam.HeadGradients(
        fmap=torch.cat([p.fmap for p in parts]),
        grads=torch.cat([p.grads for p in parts]),
        logits=torch.cat([p.logits for p in parts]),
        targets=torch.cat([p.targets for p in parts]),
        pooled=None if any(p is None for p in pooled) else torch.cat(pooled),  # type: ignore[arg-type]
    )


def _head_gradients_batched(
    net: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor | None,
    opts: ExplainOptions,
    input_gradient: bool,
) -> tuple[cam.HeadGradients, torch.Tensor | None]:
    """Grad-CAM's head gradients per chunk and, with ``input_gradient``, the signed input
    gradients of the same pass (cam.head_and_input_gradients)."""
    parts, grads = [], []
    step = max(1, opts.graph_batch_size if input_gradient else opts.batch_size)
    for s in range(0, x.shape[0], step):
        xs = x[s : s + step]
        tt = None if t is None else t[s : s + step]
        if input_gradient:
            hg, grad = cam.head_and_input_gradients(net, xs.contiguous(), tt, opts.bf16)
            parts.append(hg)
            grads.append(grad)
        else:
            parts.append(cam.head_gradients(net, xs, tt, opts.bf16))
    return _merge(parts), torch.cat(grads) if grads else None
