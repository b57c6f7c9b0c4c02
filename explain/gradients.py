"""Input-gradient maps: vanilla saliency (Simonyan et al. 2014) and SmoothGrad.

Both are the absolute gradient of each sample's target logit with respect to the input
pixels (one input channel, so no reduction over channels). SmoothGrad averages it over
noisy copies of the input (Smilkov et al. 2017).
"""

from __future__ import annotations

import torch
from torch import nn

from explain.options import ExplainOptions


def _abs_input_gradient(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor, bf16: bool
) -> torch.Tensor:
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(xg)
        score = logits.float().gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(score, xg)
    return grad.detach().float().abs()[:, 0]


def saliency(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor, opts: ExplainOptions
) -> torch.Tensor:
    """|d logit_target / d input| per sample, (N, S, S)."""
    out = [
        _abs_input_gradient(
            net, x[i : i + opts.batch_size], targets[i : i + opts.batch_size], opts.bf16
        )
        for i in range(0, x.shape[0], opts.batch_size)
    ]
    return torch.cat(out)


def smoothgrad(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor, opts: ExplainOptions
) -> torch.Tensor:
    """Mean absolute input gradient over ``smoothgrad_samples`` noisy copies, (N, S, S)."""
    gen = torch.Generator().manual_seed(opts.seed)
    span = (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True)).clamp_min(
        1e-6
    )
    total = torch.zeros(x.shape[0], x.shape[2], x.shape[3])
    for _ in range(max(1, opts.smoothgrad_samples)):
        noise = torch.randn(x.shape, generator=gen) * (opts.smoothgrad_sigma * span)
        noisy = (x + noise).contiguous(memory_format=torch.channels_last)
        total += saliency(net, noisy, targets, opts)
    return total / max(1, opts.smoothgrad_samples)
