"""Our Grad-CAM, Grad-CAM++, saliency and occlusion against pytorch-grad-cam and Captum.

Same randomly initialised DenseNet169, same layer (the final ReLU), same targets; the maps
must correlate at >= 0.99. pytorch-grad-cam imports torchvision at import time only for
helpers we do not call; PyPI torchvision does not load with our torch build, so when it
is missing a placeholder module (whose functions raise) stands in for it.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
import types
from typing import Any

import numpy as np
import pytest
import torch

from explain.attribution import explain
from explain.options import ExplainOptions
from inference.model import build_network

SIZE = 96
FP32 = ExplainOptions(bf16=False)


def _unavailable(*_a: Any, **_k: Any) -> Any:
    raise RuntimeError("torchvision is not installed (placeholder for pytorch-grad-cam)")


def _placeholder_torchvision() -> None:
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    for name in ("Compose", "Normalize", "ToTensor"):
        setattr(transforms, name, _unavailable)
    functional.resize = _unavailable  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    tv.transforms = transforms  # type: ignore[attr-defined]
    sys.modules.update(
        {
            "torchvision": tv,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
        }
    )


def _import_grad_cam() -> Any:
    for dep in ("pytorch_grad_cam", "cv2", "ttach"):
        if importlib.util.find_spec(dep) is None:
            pytest.skip(f"{dep} not installed (test-only dependency of the grad-cam package)")
    if importlib.util.find_spec("torchvision") is None:
        _placeholder_torchvision()
    return importlib.import_module("pytorch_grad_cam")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _images(size: int) -> torch.Tensor:
    yy, xx = np.mgrid[:size, :size]
    out = []
    for fy, fx in ((0.4, 0.5), (0.6, 0.3), (0.5, 0.5)):
        disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2) * 0.5
        blob = np.exp(-((yy - fy * size) ** 2 + (xx - fx * size) ** 2) / (size * 0.6))
        out.append(np.clip(disc + blob, 0, 1))
    return torch.from_numpy(np.stack(out).astype(np.float32))[:, None]


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(3)
    return build_network().eval()


@pytest.fixture(scope="module")
def setup(net: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor, list[int]]:
    """Grad-CAM case: 96 px gives a 3x3 feature map."""
    return net, _images(SIZE)[:2], [0, 3]


@pytest.fixture(scope="module")
def small(net: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor, list[int]]:
    """Input-gradient and occlusion case: 64 px, two images, full backward passes."""
    return net, _images(64)[:2], [2, 1]


def test_gradcam_matches_pytorch_grad_cam(setup: Any) -> None:
    gc = _import_grad_cam()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net, x, targets = setup
    ours = explain(net, x, "gradcam,gradcampp", targets, FP32)
    ours_bf16 = explain(net, x, "gradcam", targets, ExplainOptions(bf16=True))
    twin = copy.deepcopy(net)  # pytorch-grad-cam backpropagates through the whole model
    for name, cls in (("gradcam", gc.GradCAM), ("gradcampp", gc.GradCAMPlusPlus)):
        with cls(model=twin, target_layers=[twin.class_layers.relu]) as cam:
            theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
        for i in range(len(targets)):
            assert _corr(ours[name].normalised[i], theirs[i]) >= 0.99, (name, i)
    for i in range(len(targets)):
        assert _corr(ours_bf16["gradcam"].raw[i], ours["gradcam"].raw[i]) >= 0.98


def test_gradcam_matches_captum(setup: Any) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    net, x, targets = setup
    ours = explain(net, x, "gradcam", targets, FP32)["gradcam"]
    layer_gc = captum_attr.LayerGradCam(net, net.class_layers.relu)
    cam = layer_gc.attribute(x, target=torch.tensor(targets), relu_attributions=True)
    cam = captum_attr.LayerAttribution.interpolate(cam, (SIZE, SIZE), "bilinear")[:, 0]
    for i in range(len(targets)):
        assert _corr(ours.raw[i], cam[i].detach().numpy()) >= 0.99


def test_saliency_matches_captum(small: Any) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    net, x, targets = small
    ours = explain(net, x, "saliency", targets, FP32)["saliency"]
    sal = captum_attr.Saliency(net).attribute(
        x.clone().requires_grad_(True), target=torch.tensor(targets), abs=True
    )
    for i in range(len(targets)):
        assert _corr(ours.raw[i], sal[i, 0].detach().numpy()) >= 0.99


def test_occlusion_matches_captum(small: Any) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    net, x, targets = small
    opts = ExplainOptions(bf16=False, occlusion_patch=32, occlusion_stride=16)
    ours = explain(net, x, "occlusion", targets, opts)["occlusion"]

    def prob(inp: torch.Tensor) -> torch.Tensor:
        return torch.softmax(net(inp), dim=1)

    with torch.no_grad():
        theirs = captum_attr.Occlusion(prob).attribute(
            x,
            target=torch.tensor(targets),
            sliding_window_shapes=(1, 32, 32),
            strides=(1, 16, 16),
            baselines=0.0,
            perturbations_per_eval=9,
        )
    for i in range(len(targets)):
        assert _corr(ours.raw[i], theirs[i, 0].numpy()) >= 0.99
