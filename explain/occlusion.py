"""Occlusion sensitivity (Zeiler & Fergus 2014).

A square patch filled with a baseline value slides over the image; every pixel's score is
the mean drop of the target-class probability over the patches covering it (positive =
hiding it lowers the probability). Patches always reach the last row and column.
"""

from __future__ import annotations

import torch
from torch import nn

from explain.model_access import target_probability
from explain.options import ExplainOptions


def patch_masks(size: int, patch: int, stride: int) -> torch.Tensor:
    """(P, 1, S, S) float masks, one per patch position, covering every pixel."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    masks = torch.zeros(len(starts) ** 2, 1, size, size)
    k = 0
    for y in starts:
        for x in starts:
            masks[k, 0, y : y + patch, x : x + patch] = 1.0
            k += 1
    return masks


def occlusion(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor, opts: ExplainOptions
) -> torch.Tensor:
    """Mean target-probability drop per pixel, (N, S, S); costs P forwards per image."""
    size = x.shape[-1]
    patch, stride = opts.patch_and_stride(size)
    masks = patch_masks(size, patch, stride)
    count = masks.sum(dim=0)[0]
    base = target_probability(net, x, targets, opts.bf16, opts.batch_size)
    out = torch.zeros(x.shape[0], size, size)
    chunk = max(1, opts.batch_size)
    for i in range(x.shape[0]):
        drops = []
        for s in range(0, masks.shape[0], chunk):
            m = masks[s : s + chunk]
            occluded = x[i : i + 1] * (1 - m) + opts.occlusion_baseline * m
            occluded = occluded.contiguous(memory_format=torch.channels_last)
            t = targets[i : i + 1].expand(m.shape[0])
            drops.append(base[i] - target_probability(net, occluded, t, opts.bf16, chunk))
        drop = torch.cat(drops)
        out[i] = (drop[:, None, None] * masks[:, 0]).sum(dim=0) / count
    return out
