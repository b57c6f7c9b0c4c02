"""Attribution methods: known answers on a hand-built network, batching, targets, shapes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from explain import cam
from explain.activations import strongest_activations, top_activations
from explain.attribution import explain, normalise
from explain.options import METHODS, ExplainOptions, parse_methods
from inference.model import build_network
from vocabulary.errors import InputError

FAST = ExplainOptions(bf16=False, smoothgrad_samples=2, occlusion_patch=16, occlusion_stride=16)
FP32 = ExplainOptions(bf16=False)


class TinyNet(nn.Module):
    """DenseNet-shaped toy: features = [x, 1 - x]; logits = identity of the pooled features.

    Grad-CAM for class 0 is therefore proportional to x and for class 1 to 1 - x;
    the input gradient of either logit is the same constant everywhere.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, kernel_size=1)
        self.class_layers = nn.Sequential()
        self.class_layers.add_module("relu", nn.ReLU())
        self.class_layers.add_module("pool", nn.AdaptiveAvgPool2d(1))
        self.class_layers.add_module("flatten", nn.Flatten())
        self.class_layers.add_module("out", nn.Linear(2, 2))
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
            self.features.bias.copy_(torch.tensor([0.0, 1.0]))
            self.class_layers.out.weight.copy_(torch.eye(2))
            self.class_layers.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_layers(self.features(x))  # type: ignore[no-any-return]


def _ramp(size: int = 16, top: float = 1.0) -> np.ndarray:
    return np.tile(np.linspace(0.0, top, size, dtype=np.float32), (size, 1))


@pytest.fixture(scope="module")
def dense() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = build_network().eval()
    x = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    return net, x


@pytest.fixture(scope="module")
def small(dense: Any) -> tuple[nn.Module, torch.Tensor]:
    """32 px copies for the methods that need full backward passes or many forwards."""
    net, x = dense
    return net, torch.nn.functional.avg_pool2d(x, 2)


def test_gradcam_known_answer_with_mixed_targets_in_one_batch() -> None:
    ramp = _ramp()
    x = np.stack([ramp, ramp])[:, None]
    res = explain(TinyNet(), x, ["gradcam", "gradcampp"], targets=[0, 1], options=FP32)
    fast = explain(TinyNet(), x, "gradcam", targets=[0, 1])["gradcam"]  # bf16 trunk
    np.testing.assert_allclose(fast.normalised[1], 1.0 - ramp, atol=1e-2)
    for name in ("gradcam", "gradcampp"):
        a = res[name]
        np.testing.assert_allclose(a.normalised[0], ramp, atol=1e-5)
        np.testing.assert_allclose(a.normalised[1], 1.0 - ramp, atol=1e-5)
        assert list(a.targets) == [0, 1]
    # raw Grad-CAM = (1/hw) * feature map of the target channel
    np.testing.assert_allclose(res["gradcam"].raw[0], ramp / ramp.size, rtol=1e-4, atol=1e-9)


def test_saliency_known_answer() -> None:
    x = _ramp(top=0.9)[None, None]  # 1 - x stays above the ReLU's kink
    sal = explain(TinyNet(), x, "saliency", targets=[1], options=FP32)
    np.testing.assert_allclose(sal["saliency"].raw[0], np.full((16, 16), 1 / 256), rtol=1e-5)


def test_default_targets_are_the_predicted_classes() -> None:
    ramp = _ramp()
    x = np.stack([ramp * 0.2, 1.0 - ramp * 0.2])[:, None]  # mean low -> class 1, high -> 0
    res = explain(TinyNet(), x, "gradcam,saliency")
    assert list(res["gradcam"].targets) == [1, 0]
    assert list(res["saliency"].targets) == [1, 0]


def _assert_batched_equals_single(
    net: nn.Module, x: torch.Tensor, methods: tuple[str, ...], targets: list[int]
) -> None:
    batched = explain(net, x, methods, targets, FAST)
    for i, t in enumerate(targets):
        single = explain(net, x[i : i + 1], methods, [t], FAST)
        for m in methods:
            ref = single[m].raw[0]
            np.testing.assert_allclose(batched[m].raw[i], ref, atol=1e-6 + 1e-3 * np.abs(ref).max())


def test_batched_equals_single_image_cams(dense: Any) -> None:
    net, x = dense
    _assert_batched_equals_single(net, x, ("gradcam", "gradcampp"), [2, 0, 3])


def test_batched_equals_single_image_gradient_and_occlusion(small: Any) -> None:
    net, x = small
    _assert_batched_equals_single(net, x[:2], ("saliency", "occlusion"), [3, 1])


def test_targets_change_the_cam(dense: Any) -> None:
    net, x = dense
    a = explain(net, x[:1], "gradcam", [0], FAST)["gradcam"].raw[0]
    b = explain(net, x[:1], "gradcam", [3], FAST)["gradcam"].raw[0]
    assert not np.allclose(a, b)


def test_shapes_dtypes_ranges_all_methods(small: Any) -> None:
    net, x = small
    methods = [m for m in METHODS if m != "sae"]  # needs an SAE file: test_sparse_autoencoder
    res = explain(net, x[:2].numpy(), methods, None, FAST)
    assert list(res) == methods
    for a in res.values():
        assert a.raw.shape == a.normalised.shape == (2, 32, 32)
        assert a.raw.dtype == a.normalised.dtype == np.float32
        assert a.normalised.min() >= 0.0 and a.normalised.max() <= 1.0
        assert a.normalised.max() == pytest.approx(1.0)
        assert a.targets.dtype == np.int64 and a.targets.shape == (2,)
    assert (res["saliency"].raw >= 0).all() and (res["gradcam"].raw >= 0).all()
    # all methods explain the same (predicted) classes
    assert len({tuple(a.targets) for a in res.values()}) == 1


def test_smoothgrad_is_deterministic_and_resembles_saliency(small: Any) -> None:
    net, x = small
    opts = ExplainOptions(smoothgrad_samples=2, smoothgrad_sigma=0.02)
    a = explain(net, x[:1], "smoothgrad,saliency", [1], opts)
    b = explain(net, x[:1], "smoothgrad", [1], opts)
    np.testing.assert_array_equal(a["smoothgrad"].raw, b["smoothgrad"].raw)
    corr = np.corrcoef(a["smoothgrad"].raw.ravel(), a["saliency"].raw.ravel())[0, 1]
    assert corr > 0.5


def test_network_mode_is_restored() -> None:
    net = TinyNet().train()
    explain(net, _ramp()[None, None], "gradcam")
    assert net.training


def test_bad_inputs_raise() -> None:
    net = TinyNet()
    with pytest.raises(InputError):
        explain(net, np.zeros((2, 3, 16, 16), np.float32), "gradcam")
    with pytest.raises(InputError):
        explain(net, np.zeros((2, 1, 16, 16), np.float32), "gradcam", targets=[0, 1, 0])
    with pytest.raises(InputError):
        parse_methods("gradcam,lime")
    assert parse_methods(" GradCAM, saliency,gradcam") == ("gradcam", "saliency")


def test_normalise_constant_and_negative_maps() -> None:
    raw = np.stack([np.full((4, 4), 3.0), np.linspace(-1, 1, 16).reshape(4, 4)]).astype(np.float32)
    cam = normalise(raw, "gradcam")
    assert (cam[0] == 0).all() and cam[1].min() == 0.0 and cam[1].max() == 1.0
    occ = normalise(raw, "occlusion")
    assert (occ[1][raw[1] <= 0] == 0).all() and occ[1].max() == 1.0


def test_top_activations(dense: Any) -> None:
    net, x = dense
    img = x[0, 0].numpy()
    maps = top_activations(net, img, k=5)
    assert maps.shape == (5, 2, 2) and maps.dtype == np.float32
    top = strongest_activations(net, img, "features.denseblock2", k=4)
    assert top.maps.shape == (4, 8, 8)
    assert list(top.strength) == sorted(top.strength, reverse=True)
    np.testing.assert_allclose(top.maps.mean(axis=(1, 2)), top.strength, rtol=1e-5)
    with pytest.raises(InputError):
        top_activations(net, img, layer="no.such.layer")


@pytest.mark.parametrize("batch_size", [32, 2])
def test_gradcam_with_saliency_in_one_pass_equals_each_alone(small: Any, batch_size: int) -> None:
    """Grad-CAM + saliency share one forward/backward; the maps are those of separate runs."""
    net, x = small
    opts = ExplainOptions(bf16=False, batch_size=batch_size)
    both = explain(net, x, ["gradcam", "saliency"], None, opts)
    cam = explain(net, x, ["gradcam"], None, opts)["gradcam"]
    sal = explain(net, x, ["saliency"], cam.targets, opts)["saliency"]
    np.testing.assert_array_equal(both["saliency"].targets, cam.targets)
    np.testing.assert_allclose(both["gradcam"].raw, cam.raw, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(both["saliency"].raw, sal.raw, rtol=1e-5, atol=1e-9)
    assert both["saliency"].raw.max() > 0
    assert both["saliency"].logits is not None
    np.testing.assert_allclose(both["saliency"].logits, cam.logits, rtol=1e-5, atol=1e-6)


def test_layercam_and_gradient_variants_known_answers() -> None:
    """TinyNet: the target channel's gradient is 1/hw at every position (0 elsewhere), so
    LayerCAM = Grad-CAM; the input gradient is 1/256, so gradient x input = x / 256 and
    SmoothGrad-squared = 1/256^2 while the noise keeps x above the ReLU's kink."""
    x = (0.2 + 0.7 * _ramp())[None, None]
    res = explain(TinyNet(), x, ["gradcam", "layercam", "gradinput"], targets=[0], options=FP32)
    np.testing.assert_allclose(res["layercam"].raw, res["gradcam"].raw, rtol=1e-6)
    np.testing.assert_allclose(res["gradinput"].raw[0], x[0, 0] / 256, rtol=1e-5)
    opts = ExplainOptions(bf16=False, smoothgrad_samples=3, smoothgrad_sigma=0.01)
    sq = explain(TinyNet(), x, "smoothgrad-sq", targets=[0], options=opts)["smoothgrad-sq"]
    np.testing.assert_allclose(sq.raw[0], np.full((16, 16), 1 / 256**2), rtol=1e-5)


def test_sharpened_gradcam_known_answer() -> None:
    """TinyNet, class 0: Grad-CAM = x / 256 and the input gradient is 1/256, so
    gradcam-gxi = x/256 * (1 + 3 * min(1, x / q)), q = the 99.5th percentile of x; the
    ranking inside the Grad-CAM region follows gradient x input (here: x)."""
    x = (0.2 + 0.7 * _ramp())[None, None]
    res = explain(TinyNet(), x, ["gradcam-gxi"], targets=[0], options=FP32)["gradcam-gxi"]
    img = x[0, 0].astype(np.float64)
    fine = np.clip(img / np.quantile(img, 0.995), 0.0, 1.0)
    np.testing.assert_allclose(res.raw[0], img / 256 * (1 + 3 * fine), rtol=1e-5)
    assert res.logits is not None  # the CAM pass's head outputs: no second forward
    plain = ExplainOptions(bf16=False, sharpen_weight=0.0)  # weight 0: Grad-CAM itself
    res0 = explain(TinyNet(), x, ["gradcam-gxi"], targets=[0], options=plain)["gradcam-gxi"]
    np.testing.assert_allclose(res0.raw[0], img / 256, rtol=1e-5)


def test_sharpened_gradcam_shares_the_pass_with_gradcam_and_saliency(small: Any) -> None:
    net, x = small
    together = explain(net, x, ["gradcam-gxi", "gradcam", "saliency"], [1, 2, 3], FP32)
    for name in ("gradcam-gxi", "gradcam", "saliency"):
        alone = explain(net, x, name, [1, 2, 3], FP32)[name]
        np.testing.assert_allclose(together[name].raw, alone.raw, rtol=1e-4, atol=1e-8)
    sharp, coarse = together["gradcam-gxi"].raw, together["gradcam"].raw
    assert ((sharp >= coarse * (1 - 1e-6)) & (sharp <= 4 * coarse + 1e-9)).all()
    assert not np.allclose(sharp / np.maximum(coarse, 1e-12), 1.0)  # the fine part acts


def test_block3_cams_use_the_finer_layer_and_the_same_prediction(dense: Any) -> None:
    """At 64 px dense block 3 is 4 x 4 (the final layer 2 x 2); the block-3 pass yields the
    same logits and pooled features as the final layer's, so a block-3 CAM alone predicts."""
    net, x = dense
    hg = cam.block3_gradients(net, x, None, False)
    assert (
        hg.pooled is not None
        and tuple(hg.fmap.shape) == (3, 1280, 4, 4)
        and hg.grads.shape == hg.fmap.shape
    )
    names = ["gradcam", "gradcam-b3", "hirescam-b3", "layercam-b3"]
    res = explain(net, x, names, [2, 0, 3], FP32)
    final, b3 = res["gradcam"], res["gradcam-b3"]
    assert b3.logits is not None and final.logits is not None and b3.pooled is not None
    np.testing.assert_allclose(b3.logits, final.logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b3.pooled, final.pooled, rtol=1e-4, atol=1e-5)
    alone = explain(net, x, ["layercam-b3"], [2, 0, 3], FP32)["layercam-b3"]
    np.testing.assert_allclose(alone.raw, res["layercam-b3"].raw, rtol=1e-5, atol=1e-9)
    for name in names[1:]:
        assert (res[name].raw >= 0).all()
        assert not np.allclose(res[name].raw, final.raw)
    # the map is Grad-CAM of the 4 x 4 block-3 activations, upsampled
    at_b3 = cam.block3_gradients(net, x, torch.tensor([2, 0, 3]), False)
    np.testing.assert_allclose(b3.raw, cam.gradcam(at_b3, 64).numpy(), rtol=1e-5, atol=1e-9)
    _assert_batched_equals_single(net, x, ("gradcam-b3", "layercam-b3"), [2, 0, 3])
