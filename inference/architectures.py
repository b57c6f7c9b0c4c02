"""The architectures ``brainxai compare`` trains side by side, all from scratch.

Every entry builds a one-channel, four-class network whose forward gives (N, 4) logits,
and says where its explanation comes from: Grad-CAM on the feature map entering the
global average pool (``pool_module``, a module whose *input* is that map) for the CNNs,
attention rollout for the ViT. The product's model and bundle format stay DenseNet169
(``inference.model``); these networks reach the product's load path only as DenseNet169.

VGG16 is not here: MONAI has no VGG and torchvision is not a dependency of the project.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from monai.networks.nets import DenseNet121, DenseNet169, EfficientNetBN, ViT
from torch import nn

from vocabulary.errors import InputError
from vocabulary.identity import CLASSES

# The small ViT: 16-pixel patches, ViT-Tiny width (hidden 192, 3 heads, MLP 768), 6 layers.
VIT_PATCH = 16
VIT_HIDDEN = 192
VIT_LAYERS = 6
VIT_HEADS = 3
VIT_MLP = 768


class ViTClassifier(nn.Module):
    """MONAI's ViT with a linear classification head on the class token, giving logits only.

    MONAI's ViT returns (output, hidden states) and by default puts a Tanh after the head;
    logits for cross-entropy need neither. Each block keeps its attention matrix
    (``save_attn``) for attention rollout.
    """

    def __init__(self, image_size: int, num_classes: int) -> None:
        super().__init__()
        if image_size % VIT_PATCH:
            raise InputError(f"the ViT needs an image size divisible by {VIT_PATCH}")
        self.vit = ViT(
            in_channels=1,
            img_size=image_size,
            patch_size=VIT_PATCH,
            hidden_size=VIT_HIDDEN,
            mlp_dim=VIT_MLP,
            num_layers=VIT_LAYERS,
            num_heads=VIT_HEADS,
            classification=True,
            num_classes=num_classes,
            spatial_dims=2,
            post_activation=None,
            save_attn=True,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, _ = self.vit(x)
        return logits  # type: ignore[no-any-return]

    def attention_stack(self) -> list[torch.Tensor]:
        """Each block's last attention matrix (N, heads, 1 + P, 1 + P), first block first."""
        stack = []
        for block in self.vit.blocks:
            attention = block.get_submodule("attn").att_mat
            if not isinstance(attention, torch.Tensor) or attention.numel() == 0:
                raise InputError("no attention kept yet: run a forward pass first")
            stack.append(attention)
        return stack


@dataclass(frozen=True)
class Architecture:
    """A trainable network and how it is explained (``pool_module`` for Grad-CAM, or None)."""

    name: str
    build: Callable[[int, int], nn.Module]  # (image_size, num_classes) -> network
    explanation: str  # "gradcam" or "attention rollout"
    pool_module: str | None  # dotted name of the module whose input Grad-CAM uses
    note: str


def _densenet169(size: int, n: int) -> nn.Module:
    return DenseNet169(spatial_dims=2, in_channels=1, out_channels=n)


def _densenet121(size: int, n: int) -> nn.Module:
    return DenseNet121(spatial_dims=2, in_channels=1, out_channels=n)


def _efficientnet_b0(size: int, n: int) -> nn.Module:
    return EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=1, num_classes=n
    )


def _vit(size: int, n: int) -> nn.Module:
    return ViTClassifier(size, n)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("densenet169", _densenet169, "gradcam", "class_layers.pool",
                     "MONAI DenseNet169 (the product's model)"),
        Architecture("densenet121", _densenet121, "gradcam", "class_layers.pool",
                     "MONAI DenseNet121"),
        Architecture("efficientnet-b0", _efficientnet_b0, "gradcam", "_avg_pooling",
                     "MONAI EfficientNetBN b0, pretrained=False"),
        Architecture("vit", _vit, "attention rollout", None,
                     f"MONAI ViT: patch {VIT_PATCH}, hidden {VIT_HIDDEN}, {VIT_LAYERS} layers, "
                     f"{VIT_HEADS} heads, MLP {VIT_MLP}, linear head on the class token"),
    )
}  # fmt: skip

# Asked for by the issue but not buildable here; the comparison table says why.
NOT_FEASIBLE: dict[str, str] = {
    "vgg16": "not feasible: MONAI has no VGG, and torchvision is not installed (its PyPI "
    "build does not work beside the CPU torch 2.13.0 the project pins); from scratch it "
    "would also cost about 4.5x DenseNet169's compute per image (15.5 vs 3.4 GMAC at 224 px)",
}

DEFAULT_ARCHITECTURES = ("densenet169", "densenet121", "efficientnet-b0", "vit", "vgg16")


def architecture(name: str) -> Architecture:
    """The registry entry for NAME; InputError for an unknown or infeasible one."""
    if name in NOT_FEASIBLE:
        raise InputError(f"{name}: {NOT_FEASIBLE[name]}")
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join([*ARCHITECTURES, *NOT_FEASIBLE])
        raise InputError(f"unknown architecture {name!r} (known: {known})") from None


def build(name: str, image_size: int, num_classes: int = len(CLASSES)) -> nn.Module:
    """A freshly initialised network of architecture NAME for square IMAGE_SIZE inputs."""
    return architecture(name).build(image_size, num_classes)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
