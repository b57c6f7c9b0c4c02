"""The strongest feature maps of a layer for one image (activation visualisation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from explain.model_access import as_batch, evaluating
from vocabulary.errors import InputError

DEFAULT_LAYER = "class_layers.relu"  # DenseNet169's final ReLU (what Grad-CAM uses)


@dataclass(frozen=True)
class TopActivations:
    channels: NDArray[np.int64]  # (k,) channel indices, strongest first
    maps: NDArray[np.float32]  # (k, h, w) activations of those channels
    strength: NDArray[np.float32]  # (k,) mean activation of each channel


def layer_output(net: nn.Module, image: Any, layer: str, bf16: bool = False) -> torch.Tensor:
    """Output (1, C, h, w) of the named module for one image (a forward hook)."""
    modules = dict(net.named_modules())
    if layer not in modules:
        raise InputError(f"no layer {layer!r}; e.g. features.denseblock2, {DEFAULT_LAYER}")
    x = as_batch(np.asarray(image, dtype=np.float32).reshape(1, 1, *np.shape(image)[-2:]))
    captured: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        captured.append(out.detach().float().clone())

    handle = modules[layer].register_forward_hook(hook)
    try:
        with (
            evaluating(net),
            torch.no_grad(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
        ):
            net(x)
    finally:
        handle.remove()
    out = captured[0]
    if out.ndim != 4:
        raise InputError(f"layer {layer!r} does not produce a feature map: {tuple(out.shape)}")
    return out


def strongest_activations(
    net: nn.Module, image: Any, layer: str = DEFAULT_LAYER, k: int = 8
) -> TopActivations:
    """The k channels with the highest mean activation, strongest first."""
    out = layer_output(net, image, layer)[0]
    strength = out.mean(dim=(1, 2))
    k = max(1, min(k, out.shape[0]))
    top = torch.topk(strength, k).indices
    return TopActivations(
        channels=top.numpy().astype(np.int64),
        maps=np.ascontiguousarray(out[top].numpy(), dtype=np.float32),
        strength=strength[top].numpy().astype(np.float32),
    )


def top_activations(
    net: nn.Module, image: Any, layer: str = DEFAULT_LAYER, k: int = 8
) -> NDArray[np.float32]:
    """(k, h, w) maps of the k strongest channels of ``layer`` for an (S, S) image."""
    return strongest_activations(net, image, layer, k).maps
