"""Attention rollout: how much each input patch flows into the class token of a ViT.

Abnar & Zuidema 2020 ("Quantifying Attention Flow in Transformers"): per layer the heads'
attention is averaged, the residual connection is added as identity (A' = (A + I) / 2,
rows renormalised), and the layers are multiplied from the first to the last,
R = A'_L ... A'_2 A'_1. The class token's row of R, over the patch tokens, is the map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from explain.model_access import upsample
from vocabulary.errors import InputError


def attention_rollout(attentions: Sequence[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Rolled-out attention (N, T, T) from per-layer attention (N, heads, T, T), first first.

    ``residual`` is the identity's weight in each layer (0.5 as in the paper).
    """
    if not attentions:
        raise InputError("attention rollout needs at least one layer")
    first = attentions[0]
    if first.ndim != 4 or first.shape[-1] != first.shape[-2]:
        raise InputError(f"expected attention of shape (N, heads, T, T), got {tuple(first.shape)}")
    n, _, t, _ = first.shape
    eye = torch.eye(t, dtype=torch.float32).expand(n, t, t)
    rolled = eye
    for layer in attentions:
        fused = layer.float().mean(dim=1)
        mixed = residual * eye + (1.0 - residual) * fused
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rolled = mixed @ rolled
    return rolled


def rollout_maps(attentions: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """The class token's rollout over a square patch grid, resized to (N, size, size).

    The class token is token 0 and the patches follow in row-major order (MONAI's ViT).
    """
    rolled = attention_rollout(attentions)
    patches = rolled[:, 0, 1:]
    grid = int(round(patches.shape[1] ** 0.5))
    if grid * grid != patches.shape[1]:
        raise InputError(f"{patches.shape[1]} patch tokens do not form a square grid")
    return upsample(patches.reshape(-1, grid, grid), size)
