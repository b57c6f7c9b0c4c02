"""Grad-CAM and Grad-CAM++ on the feature map after DenseNet169's final ReLU.

The trunk runs once without an autograd graph (bf16 autocast); only the classifier head
(global average pool + linear) is differentiated, with respect to the detached feature
map. With saliency asked for as well, ``head_and_input_gradients`` runs the trunk once with
a graph and one backward gives both (saliency needs that graph anyway). Each sample's own
target logit is differentiated, so batches never mix targets.
References: Selvaraju et al. 2017 (Grad-CAM), Chattopadhay et al. 2018 (Grad-CAM++).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from explain.model_access import trunk_features, upsample
from inference.model import feature_extractor, head_forward

EPS = 1e-7


@dataclass(frozen=True)
class HeadGradients:
    fmap: torch.Tensor  # (N, C, h, w) float32 activations
    grads: torch.Tensor  # (N, C, h, w) d target logit / d activations
    logits: torch.Tensor  # (N, K) float32
    targets: torch.Tensor  # (N,) int64


def head_gradients(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor | None, bf16: bool
) -> HeadGradients:
    """One trunk forward, then gradients of each sample's target logit through the head."""
    fmap = trunk_features(net, x, bf16).requires_grad_(True)
    with torch.enable_grad():
        _, logits = head_forward(net, fmap)
        t = logits.detach().argmax(1) if targets is None else targets
        score = logits.gather(1, t[:, None]).sum()
        (grads,) = torch.autograd.grad(score, fmap)
    return HeadGradients(fmap.detach(), grads, logits.detach().float(), t)


def head_and_input_gradients(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor | None, bf16: bool
) -> tuple[HeadGradients, torch.Tensor]:
    """``head_gradients`` and |d target logit / d input| (saliency) from one pass.

    Grad-CAM and saliency differentiate the same target logit, so one trunk forward with an
    autograd graph and one backward give both (the head stays float32 as in
    ``head_gradients``); separately they cost a no-grad forward more.
    """
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            fmap = torch.relu(feature_extractor(net)(xg))
        fmap = fmap.float()
        _, logits = head_forward(net, fmap)
        t = logits.detach().argmax(1) if targets is None else targets
        score = logits.gather(1, t[:, None]).sum()
        grads, xgrad = torch.autograd.grad(score, (fmap, xg))
    hg = HeadGradients(fmap.detach(), grads, logits.detach().float(), t)
    return hg, xgrad.detach().float().abs()[:, 0]


def gradcam(hg: HeadGradients, size: int) -> torch.Tensor:
    """ReLU of the gradient-weighted sum of feature maps, resized to (N, size, size)."""
    weights = hg.grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * hg.fmap).sum(dim=1))
    return upsample(cam, size)


def gradcampp(hg: HeadGradients, size: int) -> torch.Tensor:
    """Grad-CAM++ with the usual closed form for the alpha coefficients.

    alpha = g^2 / (2 g^2 + sum(A) g^3), weights = sum(alpha * relu(g)) over positions,
    written as in pytorch-grad-cam so that the two implementations can be compared.
    """
    g = hg.grads
    g2 = g * g
    g3 = g2 * g
    sum_a = hg.fmap.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + EPS)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (torch.relu(g) * alpha).sum(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * hg.fmap).sum(dim=1))
    return upsample(cam, size)
