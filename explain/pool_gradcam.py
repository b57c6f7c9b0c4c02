"""Grad-CAM for any CNN classifier: on the feature map entering its global average pool.

The product's Grad-CAM (``explain.cam``) knows DenseNet169's trunk and head; this one takes
the network whole and the name of its pooling module, whose input (caught by a forward
pre-hook) is the last convolutional block's activated feature map. For DenseNet169 the two
give the same map. Reference: Selvaraju et al. 2017.
"""

from __future__ import annotations

import torch
from torch import nn

from explain.model_access import evaluating, upsample
from vocabulary.errors import InputError


def pool_input_gradcam(
    net: nn.Module, x: torch.Tensor, pool_module: str, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Grad-CAM maps (N, S, S) for each sample's target class, float32 logits (N, K)).

    Targets default to the predicted class. One forward with a graph, one gradient.
    """
    caught: list[torch.Tensor] = []

    def catch(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        caught.append(inputs[0])

    handle = net.get_submodule(pool_module).register_forward_pre_hook(catch)
    try:
        with evaluating(net), torch.enable_grad():
            xg = x.detach().float().requires_grad_(True)
            logits = net(xg).float()
            if len(caught) != 1:
                raise InputError(f"{pool_module} ran {len(caught)} times in one forward")
            fmap = caught[0]
            t = logits.detach().argmax(1) if targets is None else targets
            score = logits.gather(1, t[:, None]).sum()
            (grads,) = torch.autograd.grad(score, fmap)
    finally:
        handle.remove()
    weights = grads.float().mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * fmap.detach().float()).sum(dim=1))
    return upsample(cam, int(x.shape[-1])), logits.detach()
