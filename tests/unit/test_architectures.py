"""The compare registry: each architecture builds from scratch and gives (N, 4) logits;
Grad-CAM on the pooled map matches the product's Grad-CAM on DenseNet169; VGG16 says why
it is missing."""

from __future__ import annotations

import pytest
import torch

from explain.cam import gradcam, head_gradients
from explain.pool_gradcam import pool_input_gradcam
from inference.architectures import ARCHITECTURES, NOT_FEASIBLE, architecture, build
from plugin.comparison import explanation_maps
from vocabulary.errors import InputError

SLOW = {"densenet169", "densenet121"}  # a few seconds each on a loaded 2-core machine


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in sorted(ARCHITECTURES)],
)
def test_architecture_gives_four_logits_and_a_map(name: str) -> None:
    torch.manual_seed(0)
    net = build(name, 32).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        logits = net(x)
    assert logits.shape == (3, 4)
    assert torch.isfinite(logits).all()
    maps = explanation_maps(architecture(name), net, x)
    assert maps.shape == (3, 32, 32)
    assert float(maps.min()) >= 0.0


@pytest.mark.slow
def test_pool_gradcam_matches_the_product_gradcam_on_densenet169() -> None:
    torch.manual_seed(1)
    net = build("densenet169", 64).eval()
    x = torch.rand(2, 1, 64, 64)
    ours, logits = pool_input_gradcam(net, x, "class_layers.pool")
    product = gradcam(head_gradients(net, x, None, bf16=False), 64)
    assert torch.allclose(ours, product, rtol=1e-4, atol=1e-6)
    assert logits.shape == (2, 4)


def test_vgg16_and_unknown_names_are_refused_with_the_reason() -> None:
    assert "vgg16" in NOT_FEASIBLE
    with pytest.raises(InputError, match="not feasible"):
        architecture("vgg16")
    with pytest.raises(InputError, match="unknown architecture"):
        architecture("resnet50")
    with pytest.raises(InputError, match="divisible"):
        build("vit", 40)
