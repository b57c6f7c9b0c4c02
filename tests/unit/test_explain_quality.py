"""Explanation-quality metrics on hand-made maps and a network whose evidence is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explain.attribution import Attribution
from explain.quality import (
    QualityOptions,
    RandomisationOptions,
    brain_mass,
    deletion_insertion,
    quality_metrics,
    random_deletion_insertion,
    randomisation_rank_corr,
    randomised_copy,
    road_deletion,
    spearman,
)
from explain.summary import MetricRow, summarise_method
from vocabulary.errors import InputError

S = 16


class RegionFeatures(nn.Module):
    """Channel 0 = 20 * x inside the left half, channel 1 = 5: logit_0 - logit_1 = 20m - 5."""

    def __init__(self) -> None:
        super().__init__()
        region = torch.zeros(1, 1, S, S)
        region[..., : S // 2] = 1.0
        self.register_buffer("region", region)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([20.0 * x * self.region, torch.full_like(x, 5.0)], dim=1)


class RegionNet(nn.Module):
    """Class 0 is decided only by the pixels of the left half (DenseNet-shaped)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = RegionFeatures()
        self.class_layers = nn.Sequential()
        self.class_layers.add_module("relu", nn.ReLU())
        self.class_layers.add_module("pool", nn.AdaptiveAvgPool2d(1))
        self.class_layers.add_module("flatten", nn.Flatten())
        self.class_layers.add_module("out", nn.Linear(2, 2))
        with torch.no_grad():
            self.class_layers.out.weight.copy_(torch.eye(2))
            self.class_layers.out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_layers(self.features(x))  # type: ignore[no-any-return]


LEFT = np.zeros((S, S), dtype=bool)
LEFT[:, : S // 2] = True
OPTS = QualityOptions(steps=8, insertion_baseline="zero", bf16=False)
ROAD = QualityOptions(steps=8, insertion_baseline="zero", bf16=False, road_noise=0.0)


def test_brain_mass_inside_outside_half_and_empty() -> None:
    assert brain_mass(LEFT.astype(np.float32), LEFT) == pytest.approx(1.0)
    assert brain_mass((~LEFT).astype(np.float32), LEFT) == pytest.approx(0.0)
    assert brain_mass(np.ones((S, S)), LEFT) == pytest.approx(0.5)
    assert brain_mass(np.zeros((S, S)), LEFT) == 0.0
    # negative attribution is not mass
    assert brain_mass(np.where(LEFT, 1.0, -5.0), LEFT) == pytest.approx(1.0)
    with pytest.raises(InputError):
        brain_mass(np.ones((4, 4)), LEFT)


def test_deletion_insertion_rank_faithful_random_and_wrong_maps() -> None:
    net, image = RegionNet(), np.ones((S, S), np.float32)
    good = deletion_insertion(net, image, LEFT.astype(np.float32), 0, OPTS)
    wrong = deletion_insertion(net, image, (~LEFT).astype(np.float32), 0, OPTS)
    rand = random_deletion_insertion(net, image, 0, OPTS)
    assert good[0] < rand[0] < wrong[0]  # deletion: lower is better
    assert good[1] > rand[1] > wrong[1]  # insertion: higher is better
    assert all(0.0 <= v <= 1.0 for v in (*good, *wrong, *rand))


def test_quality_metrics_batch() -> None:
    net = RegionNet()
    images = np.ones((2, S, S), np.float32)
    maps = np.stack([LEFT, ~LEFT]).astype(np.float32)
    attrs = {
        "a": Attribution("a", maps, maps, np.array([0, 0])),
        "b": Attribution("b", maps[::-1].copy(), maps[::-1].copy(), np.array([0, 0])),
    }
    masks = np.stack([LEFT, LEFT])
    q = quality_metrics(net, images, attrs, masks, OPTS)
    assert [m.brain_mass for m in q["a"]] == pytest.approx([1.0, 0.0])
    assert q["a"][0].deletion_auc < q["a"][1].deletion_auc
    assert q["a"][0].deletion_auc == pytest.approx(q["b"][1].deletion_auc)
    # the random-map reference is shared by all methods of an image
    assert q["a"][0].deletion_auc_random == q["b"][0].deletion_auc_random
    assert q["a"][0].head_fraction == pytest.approx(0.5)
    assert set(q["a"][0].to_dict()) >= {
        "brain_mass",
        "deletion_auc",
        "insertion_auc",
        "deletion_auc_random",
        "insertion_auc_random",
    }
    single = deletion_insertion(net, images[0], maps[0], 0, OPTS)
    assert single[0] == pytest.approx(q["a"][0].deletion_auc)


def test_spearman() -> None:
    a = np.arange(20.0).reshape(4, 5)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.ones_like(a)) == 0.0


def test_randomised_copy_changes_only_named_layers() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    before = [p.clone() for p in net.parameters()]
    twin = randomised_copy(net, RandomisationOptions(layers=("1",), seed=5))
    for p, q in zip(before, net.parameters(), strict=True):
        assert torch.equal(p, q)  # original untouched
    assert torch.equal(twin[0].weight, net[0].weight)
    assert not torch.equal(twin[1].weight, net[1].weight)
    with pytest.raises(InputError):
        randomised_copy(net, RandomisationOptions(layers=("nope",)))


def test_randomisation_rank_corr() -> None:
    net = RegionNet()
    x = np.random.default_rng(0).random((2, 1, S, S)).astype(np.float32)
    same = randomisation_rank_corr(
        net, x, "saliency", [0, 0], randomisation=RandomisationOptions(layers=())
    )
    assert same.shape == (2,) and same == pytest.approx([1.0, 1.0])
    rnd = randomisation_rank_corr(
        net, x, "gradcam", [0, 0], randomisation=RandomisationOptions(layers=("class_layers.out",))
    )
    assert rnd.shape == (2,) and np.all(np.abs(rnd) <= 1.0)


def test_summary_keys_and_shares() -> None:
    from explain.quality import QualityMetrics

    rows = [
        MetricRow(0, 0, QualityMetrics(0.9, 0.1, 0.8, 0.3, 0.5, 0.6)),
        MetricRow(0, 1, QualityMetrics(0.3, 0.2, 0.6, 0.3, 0.5, 0.6)),
        MetricRow(1, 1, QualityMetrics(0.7, 0.3, 0.7, 0.3, 0.5, 0.6)),
    ]
    s = summarise_method(rows, ("a", "b"), [0.2, 0.4])
    for key in (
        "brain_mass_mean",
        "deletion_auc_mean",
        "insertion_auc_mean",
        "randomisation_rank_corr",
    ):
        assert key in s
    assert s["brain_mass_mean"] == pytest.approx(np.mean([0.9, 0.3, 0.7]))
    assert s["randomisation_rank_corr"] == pytest.approx(0.3)
    assert s["share_brain_mass_below_0_5"] == pytest.approx(1 / 3)
    assert s["per_class"]["a"]["n"] == 2
    assert s["per_class"]["a"]["share_brain_mass_below_0_5"] == pytest.approx(0.5)
    assert s["per_class"]["b"]["brain_mass"]["mean"] == pytest.approx(0.7)
    assert s["incorrect"]["n"] == 1


def test_road_deletion_ranks_the_map_of_the_evidence_first() -> None:
    """Evidence = bright left half; removing it first (imputed from the dark right half)
    drops the probability, removing the dark half first imputes dark from dark and the
    left half from bright remains: the class stays."""
    net = RegionNet()
    image = np.where(LEFT, 1.0, 0.0).astype(np.float32)
    good = road_deletion(net, image, LEFT.astype(np.float32), 0, ROAD)
    wrong = road_deletion(net, image, (~LEFT).astype(np.float32), 0, ROAD)
    assert good < wrong - 0.2
    assert 0.0 <= good <= 1.0 and 0.0 <= wrong <= 1.0
    # the plain curve is not the ROAD curve
    assert deletion_insertion(net, image, LEFT.astype(np.float32), 0, ROAD)[0] != good


def test_quality_metrics_report_road_with_its_random_reference() -> None:
    net = RegionNet()
    image = np.where(LEFT, 1.0, 0.0).astype(np.float32)
    order = np.arange(S * S, dtype=np.float32).reshape(S, S) / (S * S)  # no ties
    maps = np.stack([LEFT + order, ~LEFT + order]).astype(np.float32)
    attrs = {"a": Attribution("a", maps, maps, np.array([0, 0]))}
    q = quality_metrics(net, np.stack([image, image]), attrs, np.stack([LEFT, LEFT]), ROAD)["a"]
    assert q[0].road_deletion_auc < q[1].road_deletion_auc
    assert q[0].road_deletion_auc == pytest.approx(
        road_deletion(net, image, maps[0], 0, ROAD), abs=1e-6
    )
    # random removal is imputed from bright neighbours: the class stays
    assert q[0].road_deletion_auc < q[0].road_deletion_auc_random
    one = {"a": Attribution("a", maps[:1], maps[:1], np.array([0]))}
    off = quality_metrics(net, image[None], one, LEFT[None], QualityOptions(road=False))["a"]
    assert np.isnan(off[0].road_deletion_auc) and np.isfinite(off[0].deletion_auc)
