"""The classifier network: MONAI DenseNet169, one input channel, four classes."""

from __future__ import annotations

import torch
from monai.networks.nets import DenseNet169
from torch import nn

from vocabulary.identity import CLASSES


def build_network(num_classes: int = len(CLASSES)) -> nn.Module:
    """A freshly initialised DenseNet169 (no pretrained weights exist offline)."""
    return DenseNet169(spatial_dims=2, in_channels=1, out_channels=num_classes)


def _child(module: nn.Module, name: str) -> nn.Module:
    child = getattr(module, name)
    if not isinstance(child, nn.Module):
        raise TypeError(f"{type(module).__name__}.{name} is not a module")
    return child


def feature_extractor(net: nn.Module) -> nn.Module:
    """The convolutional trunk whose last ReLU output Grad-CAM and the OOD score use."""
    return _child(net, "features")


def split_forward(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (feature map after the final ReLU, logits) in one pass."""
    feats: torch.Tensor = _child(net, "features")(x)
    # MONAI's class_layers = relu, pool, flatten, out; features end at norm5.
    fmap: torch.Tensor = _child(_child(net, "class_layers"), "relu")(feats)
    return fmap, head_forward(net, fmap)[1]


def head_forward(net: nn.Module, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and logits from an activated feature map."""
    cls = _child(net, "class_layers")
    pooled = torch.flatten(_child(cls, "pool")(fmap), 1)
    logits: torch.Tensor = _child(cls, "out")(pooled)
    return pooled, logits
