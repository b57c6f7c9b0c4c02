"""Small helpers around the classifier network shared by the explanation methods."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from inference.model import feature_extractor, head_forward
from vocabulary.errors import InputError


def as_batch(images: Any) -> torch.Tensor:
    """(N, 1, S, S) float32 channels-last tensor from a tensor or array of (N, [1,] S, S)."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    x = x.detach().float()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3]:
        raise InputError(f"expected images of shape (N, 1, S, S), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise InputError("no images to explain")
    return x.contiguous(memory_format=torch.channels_last)


def as_targets(targets: Any, n: int) -> torch.Tensor | None:
    """Per-sample class indices as an int64 tensor (a scalar applies to every sample)."""
    if targets is None:
        return None
    t = torch.as_tensor(np.asarray(targets), dtype=torch.int64).reshape(-1)
    if t.numel() == 1 and n > 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise InputError(f"{t.numel()} targets for {n} images")
    return t


@contextmanager
def evaluating(net: nn.Module) -> Iterator[nn.Module]:
    """Put the network in eval mode (batch norm must not mix samples) and restore it."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def trunk_features(net: nn.Module, x: torch.Tensor, bf16: bool) -> torch.Tensor:
    """Feature map after DenseNet169's final ReLU, float32, without an autograd graph."""
    features = feature_extractor(net)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        fmap = torch.relu(features(x))
    return fmap.float()


def logits_of(net: nn.Module, x: torch.Tensor, bf16: bool, batch_size: int) -> torch.Tensor:
    """Float32 logits of a batch, computed in chunks without gradients."""
    out = []
    for start in range(0, x.shape[0], batch_size):
        fmap = trunk_features(net, x[start : start + batch_size], bf16)
        with torch.no_grad():
            out.append(head_forward(net, fmap)[1].float())
    return torch.cat(out)


def target_probability(
    net: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    bf16: bool,
    batch_size: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Softmax probability of each sample's target class, shape (N,)."""
    logits = logits_of(net, x, bf16, batch_size)
    probs = torch.softmax(logits / temperature, dim=1)
    return probs.gather(1, targets[:, None].to(probs.device))[:, 0]


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (half-pixel centres) resize of (N, h, w) maps to (N, size, size)."""
    if maps.shape[-1] == size and maps.shape[-2] == size:
        return maps
    return F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[
        :, 0
    ]


def to_numpy(t: torch.Tensor) -> NDArray[np.float32]:
    return np.ascontiguousarray(t.detach().float().cpu().numpy(), dtype=np.float32)
