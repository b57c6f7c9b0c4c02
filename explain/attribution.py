"""``explain``: batched attribution maps with a per-sample target class.

Every method returns an ``Attribution`` at input resolution: ``raw`` in the method's own
units and ``normalised`` to [0, 1] for display and for the quality metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from explain import cam, gradients, occlusion, sae_features
from explain.model_access import as_batch, as_targets, evaluating, logits_of, to_numpy
from explain.options import CAM_METHODS, METHODS, ExplainOptions
from vocabulary.errors import InputError

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
        if method in ("saliency", "smoothgrad"):
            hi = np.percentile(flat, clip_percentile, axis=1, keepdims=True)
        else:
            hi = flat.max(axis=1, keepdims=True)
    span = hi - lo
    out = np.clip((flat - lo) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    out[span[:, 0] <= 0] = 0.0
    result: FloatMaps = out.reshape(raw.shape).astype(np.float32)
    return result


def parse_methods(
    methods: str | Sequence[str] | None, default: Sequence[str] = ()
) -> tuple[str, ...]:
    """Validate method names ("gradcam,saliency" or a sequence), keeping their order.

    No names at all (None, "", " , ") give ``default``; with no default that is an error.
    """
    names = (methods or "").split(",") if isinstance(methods, str | None) else list(methods)
    out = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip())) or tuple(default)
    unknown = [n for n in out if n not in METHODS]
    if unknown or not out:
        raise InputError(f"unknown method(s) {unknown or methods!r}; choose from {METHODS}")
    return out


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
    size = x.shape[-1]
    maps: dict[str, torch.Tensor] = {}
    head: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None
    with evaluating(net):
        if CAM_METHODS & set(names):
            hg, sal = _head_gradients_batched(net, x, t, opts, "saliency" in names)
            if sal is not None:
                maps["saliency"] = sal
            t = hg.targets
            head = (to_numpy(hg.logits), to_numpy(hg.fmap.mean(dim=(2, 3))))
            for name in CAM_METHODS & set(names):
                fn = cam.gradcam if name == "gradcam" else cam.gradcampp
                maps[name] = fn(hg, size)
        if t is None:
            t = logits_of(net, x, opts.bf16, opts.batch_size).argmax(1)
        for name in names:
            if name == "saliency" and name not in maps:
                maps[name] = gradients.saliency(net, x, t, opts)
            elif name == "smoothgrad":
                maps[name] = gradients.smoothgrad(net, x, t, opts)
            elif name == "occlusion":
                maps[name] = occlusion.occlusion(net, x, t, opts)
            elif name == "sae":
                maps[name] = sae_features.sae_maps(net, x, t, opts)
    target_arr = t.numpy().astype(np.int64)
    result = {}
    for name in names:
        raw = to_numpy(maps[name])
        norm = normalise(raw, name, opts.saliency_clip_percentile)
        logits, pooled = head if head is not None else (None, None)
        result[name] = Attribution(name, raw, norm, target_arr, logits, pooled)
    return result


def _head_gradients_batched(
    net: nn.Module, x: torch.Tensor, t: torch.Tensor | None, opts: ExplainOptions, saliency: bool
) -> tuple[cam.HeadGradients, torch.Tensor | None]:
    """Grad-CAM's head gradients per chunk and, with ``saliency``, the saliency maps of the
    same pass (cam.head_and_input_gradients)."""
    parts, sal = [], []
    for s in range(0, x.shape[0], opts.batch_size):
        xs = x[s : s + opts.batch_size]
        tt = None if t is None else t[s : s + opts.batch_size]
        if saliency:
            hg, grad = cam.head_and_input_gradients(net, xs, tt, opts.bf16)
            parts.append(hg)
            sal.append(grad)
        else:
            parts.append(cam.head_gradients(net, xs, tt, opts.bf16))
    maps = torch.cat(sal) if sal else None
    if len(parts) == 1:
        return parts[0], maps
    merged = cam.HeadGradients(
        fmap=torch.cat([p.fmap for p in parts]),
        grads=torch.cat([p.grads for p in parts]),
        logits=torch.cat([p.logits for p in parts]),
        targets=torch.cat([p.targets for p in parts]),
    )
    return merged, maps
