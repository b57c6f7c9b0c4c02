"""The classifier network: MONAI DenseNet169, one input channel, four classes."""

from __future__ import annotations

import torch
from monai.networks.nets import DenseNet169
from torch import nn

from inference import CLASSES


def build_network(num_classes: int = len(CLASSES)) -> nn.Module:
    """A freshly initialised DenseNet169 (no pretrained weights exist offline)."""
    return DenseNet169(spatial_dims=2, in_channels=1, out_channels=num_classes)


def feature_extractor(net: nn.Module) -> nn.Module:
    """The convolutional trunk whose last ReLU output Grad-CAM and the OOD score use."""
    return net.features  # type: ignore[no-any-return]


def split_forward(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (feature map after the final ReLU, logits) in one pass."""
    feats = net.features(x)
    cls = net.class_layers
    # MONAI's class_layers = relu, pool, flatten, out; features end at norm5.
    fmap = cls.relu(feats)
    pooled = torch.flatten(cls.pool(fmap), 1)
    return fmap, cls.out(pooled)


def head_forward(net: nn.Module, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and logits from an activated feature map."""
    cls = net.class_layers
    pooled = torch.flatten(cls.pool(fmap), 1)
    return pooled, cls.out(pooled)
