"""Class activation maps: Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM and a sharpened Grad-CAM.

At the final layer (DenseNet169's last ReLU, 6 x 6 at 192 px) and at the end of dense
block 3 (transition 3's normalised, activated input: 12 x 12 at 192 px, methods "-b3").

The trunk runs once without an autograd graph (bf16 autocast); only the classifier head
(global average pool + linear) is differentiated, with respect to the detached feature
map. With saliency or the sharpened Grad-CAM asked for as well, ``head_and_input_gradients``
runs the trunk once with a graph and one backward gives both (they need that graph anyway).
Each sample's own target logit is differentiated, so batches never mix targets.
References: Selvaraju et al. 2017 (Grad-CAM), Chattopadhay et al. 2018 (Grad-CAM++),
Draelos and Carin 2020 (HiResCAM), Jiang et al. 2021 (LayerCAM). With a pooled-linear head,
HiResCAM at the final layer equals Grad-CAM (the gradient is the same at every position),
so it is offered at block 3 only.
"""

from __future__ import annotations

from collections.abc import Callable
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
    pooled: torch.Tensor | None = None  # final pooled features when fmap is an earlier layer

    def pooled_features(self) -> torch.Tensor:
        return self.fmap.mean(dim=(2, 3)) if self.pooled is None else self.pooled


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
    """``head_gradients`` and d target logit / d input (signed, (N, S, S)) from one pass.

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
    return hg, xgrad.detach().float()[:, 0]


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


def hirescam(hg: HeadGradients, size: int) -> torch.Tensor:
    """ReLU of the channel sum of gradient x activation, position by position."""
    return upsample(torch.relu((hg.grads * hg.fmap).sum(dim=1)), size)


def layercam(hg: HeadGradients, size: int) -> torch.Tensor:
    """ReLU of the channel sum of positive gradient x activation (Jiang et al. 2021)."""
    return upsample(torch.relu((torch.relu(hg.grads) * hg.fmap).sum(dim=1)), size)


CamFn = Callable[[HeadGradients, int], torch.Tensor]
WEIGHTINGS: dict[str, CamFn] = {
    "gradcam": gradcam,
    "gradcampp": gradcampp,
    "hirescam": hirescam,
    "layercam": layercam,
}
BLOCK3 = "-b3"


def sharpened_gradcam(
    hg: HeadGradients, input_grad: torch.Tensor, x: torch.Tensor, weight: float
) -> torch.Tensor:
    """Grad-CAM x (1 + ``weight`` x positive gradient x input), (N, S, S).

    Grad-CAM (final layer) says where; the positive part of gradient x input (Shrikumar et
    al. 2016), scaled by its 99.5th percentile and clipped to [0, 1], ranks the pixels inside
    that region, as Guided Grad-CAM does with guided backpropagation (Selvaraju et al.
    2017). ``input_grad`` is d target logit / d input of the same pass, ``x`` the (N, S, S)
    input. ExplainOptions.sharpen_weight (3) was chosen by explain-eval on the validation
    split (README, "Explanation quality").
    """
    coarse = gradcam(hg, x.shape[-1])
    gxi = torch.relu(input_grad * x.float()).flatten(1)
    top = torch.quantile(gxi, 0.995, dim=1, keepdim=True).clamp_min(1e-12)
    fine = (gxi / top).clamp(0.0, 1.0).reshape(coarse.shape)
    return coarse * (1.0 + weight * fine)


def cam_spec(method: str) -> tuple[CamFn, bool]:
    """(map function, at block 3?) of a CAM method name such as "layercam-b3"."""
    base = method.removesuffix(BLOCK3)
    return WEIGHTINGS[base], method.endswith(BLOCK3)


def block3_gradients(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor | None, bf16: bool
) -> HeadGradients:
    """Activations A = relu(norm(dense block 3 output)) and d target logit / d A.

    The trunk up to A runs without a graph; transition 3's convolution and pooling, dense
    block 4, norm5 and the head run with one (the head in float32).
    """
    feats = feature_extractor(net)
    layers = dict(feats.named_children())
    names = list(layers)
    cut = names.index("transition3")
    trans = dict(layers["transition3"].named_children())  # norm, relu, conv, pool
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        h = x
        for name in names[:cut]:
            h = layers[name](h)
        act = torch.relu(trans["norm"](h)).float()
    act.requires_grad_(True)
    with torch.enable_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            h = trans["pool"](trans["conv"](act))
            for name in names[cut + 1 :]:
                h = layers[name](h)
            fmap = torch.relu(h)
        pooled, logits = head_forward(net, fmap.float())
        t = logits.detach().argmax(1) if targets is None else targets
        score = logits.gather(1, t[:, None]).sum()
        (grads,) = torch.autograd.grad(score, act)
    return HeadGradients(act.detach(), grads, logits.detach().float(), t, pooled.detach())
