"""Input-gradient maps: saliency, SmoothGrad, SmoothGrad-squared and gradient x input.

Saliency is the absolute gradient of each sample's target logit with respect to the input
pixels (Simonyan et al. 2014; one input channel, so no reduction over channels). SmoothGrad
averages it over noisy copies of the input (Smilkov et al. 2017); SmoothGrad-squared
averages the squared gradient instead (Hooker et al. 2019). Gradient x input keeps the sign
(Shrikumar et al. 2016): positive where the pixel's value raises the target logit.
"""

from __future__ import annotations

import torch
from torch import nn

from explain.options import ExplainOptions


def _input_gradient(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor, bf16: bool
) -> torch.Tensor:
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(xg)
        score = logits.float().gather(1, targets[:, None]).sum()
        (grad,) = torch.autograd.grad(score, xg)
    return grad.detach().float()[:, 0]


def input_gradient(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor, opts: ExplainOptions
) -> torch.Tensor:
    """d logit_target / d input per sample (signed), (N, S, S), in chunks of
    ``graph_batch_size`` in the contiguous memory format (ExplainOptions says why)."""
    step = max(1, opts.graph_batch_size)
    out = [
        _input_gradient(net, x[i : i + step].contiguous(), targets[i : i + step], opts.bf16)
        for i in range(0, x.shape[0], step)
    ]
    return torch.cat(out)


def saliency(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor, opts: ExplainOptions
) -> torch.Tensor:
    """|d logit_target / d input| per sample, (N, S, S)."""
    return input_gradient(net, x, targets, opts).abs()


def gradient_x_input(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor, opts: ExplainOptions
) -> torch.Tensor:
    """Signed gradient x input per sample, (N, S, S)."""
    return input_gradient(net, x, targets, opts) * x[:, 0].float()


def smoothgrad(
    net: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    opts: ExplainOptions,
    squared: bool = False,
) -> torch.Tensor:
    """Mean absolute (or squared) input gradient over ``smoothgrad_samples`` noisy copies."""
    gen = torch.Generator().manual_seed(opts.seed)
    span = (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True)).clamp_min(
        1e-6
    )
    total = torch.zeros(x.shape[0], x.shape[2], x.shape[3])
    for _ in range(max(1, opts.smoothgrad_samples)):
        noise = torch.randn(x.shape, generator=gen) * (opts.smoothgrad_sigma * span)
        noisy = (x + noise).contiguous(memory_format=torch.channels_last)
        grad = input_gradient(net, noisy, targets, opts)
        total += grad * grad if squared else grad.abs()
    return total / max(1, opts.smoothgrad_samples)
