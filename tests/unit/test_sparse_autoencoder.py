"""The top-k SAE (explain.sparse_autoencoder) and the ``sae`` method (explain.sae_features)
on a tiny MONAI DenseNet: reconstruction, exact sparsity, dead features, the contribution
identity, the maps, and the error when there is no SAE file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import DenseNet

from explain.attribution import explain
from explain.options import ExplainOptions
from explain.sae_features import (
    brain_masks,
    contributions_of,
    explain_features,
    feature_table,
    feature_tokens,
    grid_fractions,
    head_linear,
)
from explain.sparse_autoencoder import (
    SAEConfig,
    SAEInfo,
    TopKSAE,
    dead_features,
    encode_tokens,
    load_sae,
    sae_metrics,
    save_sae,
    train_sae,
)
from vocabulary.errors import InputError, ModelError

SIZE = 32


def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = DenseNet(spatial_dims=2, in_channels=1, out_channels=4, init_features=8,
                   growth_rate=4, block_config=(2, 2), bn_size=2)  # fmt: skip
    return net.eval()


def _images(n: int, seed: int = 0) -> np.ndarray:
    """Discs (a head) with a bright blob at a random place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = []
    for _ in range(n):
        img = (((yy - 16) ** 2 + (xx - 16) ** 2) < 13**2) * (0.4 + 0.05 * rng.random((SIZE, SIZE)))
        cy, cx = rng.integers(8, 24, 2)
        img[((yy - cy) ** 2 + (xx - cx) ** 2) < 9] = 1.0
        out.append(img)
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, np.ndarray, TopKSAE]:
    net = _tiny_net()
    tokens = feature_tokens(net, _images(48))  # (48, 4, 4, 16)
    flat = tokens.reshape(-1, tokens.shape[-1])
    cfg = SAEConfig(n_features=64, k=4, lr=3e-3, batch_size=256, epochs=25, seed=0)
    sae, history = train_sae(flat, cfg)
    assert history[-1]["train_fvu"] < history[0]["train_fvu"]
    return net, tokens, sae


def test_sae_reconstructs_tiny_network_features_with_exactly_k_active(trained) -> None:
    net, tokens, sae = trained
    held_out = feature_tokens(net, _images(8, seed=1))
    flat = held_out.reshape(-1, held_out.shape[-1])
    m = sae_metrics(sae, flat)
    assert m.fvu < 0.2, m
    assert m.n_tokens == len(flat)
    codes = encode_tokens(sae, flat)
    active = (codes > 0).sum(1)
    assert torch.all(active == sae.k), active.unique()
    assert m.l0 == pytest.approx(sae.k)
    # The mean of a constant predictor explains nothing: FVU of b_dec alone is about 1.
    assert sae_metrics(TopKSAE(sae.d_in, 64, 4, float(sae.scale)), flat).fvu > 0.5


def test_dead_features_counted_on_a_constructed_sae() -> None:
    sae = TopKSAE(d_in=3, n_features=5, k=1)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]]))
        sae.b_enc.copy_(torch.tensor([0.0, 0.0, 0.0, -5.0, -5.0]))  # 3, 4: never positive
        sae.b_dec.zero_()
    tokens = np.array([[1.0, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 0]], dtype=np.float32)
    m = sae_metrics(sae, tokens)
    assert m.n_dead == 2 and m.dead_fraction == pytest.approx(0.4)
    assert dead_features(encode_tokens(sae, tokens)).tolist() == [3, 4]
    # Only the first token: features 1 and 2 are silent too.
    assert sae_metrics(sae, tokens[:1]).n_dead == 4
    assert dead_features(np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.5]])).tolist() == [0]


def test_contributions_sum_to_the_reconstructed_logit(trained) -> None:
    net, tokens, sae = trained
    c = contributions_of(sae, net, tokens[:6])
    w, b = head_linear(net)
    x = torch.from_numpy(tokens[:6].astype(np.float32)).reshape(6, -1, tokens.shape[-1])
    with torch.no_grad():
        x_hat = sae(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        logit_hat = x_hat.mean(1) @ w.t() + b
        offset = (sae.b_dec * sae.scale) @ w.t() + b
    total = c.contributions.sum(1) + offset.numpy()
    np.testing.assert_allclose(total, logit_hat.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(c.logits, (x.mean(1) @ w.t() + b).numpy(), rtol=1e-4, atol=1e-4)


def test_sae_method_maps_shape_non_negative_and_sum_of_top_features(trained, tmp_path) -> None:
    net, _, sae = trained
    path = tmp_path / "tiny.sae.pt"
    save_sae(path, sae, SAEInfo("tiny", "1", grid=(4, 4)))
    loaded, info = load_sae(path)
    assert info.model_version == "1" and loaded.k == sae.k
    images = _images(3, seed=2)
    opts = ExplainOptions(bf16=False, sae_path=str(path), sae_top_features=3)
    a = explain(net, images[:, None], ["sae"], targets=[0, 1, 2], options=opts)["sae"]
    assert a.raw.shape == (3, SIZE, SIZE) and a.normalised.shape == (3, SIZE, SIZE)
    assert (a.raw >= 0).all() and (a.normalised >= 0).all() and (a.normalised <= 1).all()
    x = torch.from_numpy(images[:, None])
    fe = explain_features(loaded, net, x, torch.tensor([0, 1, 2]), False, 3)
    assert fe.maps.shape == (3, 3, SIZE, SIZE) and (fe.maps >= 0).all()
    np.testing.assert_allclose(fe.total, a.raw, rtol=1e-4, atol=1e-6)
    # Features are sorted by contribution to the target, largest first.
    assert (np.diff(fe.contributions, axis=1) <= 1e-7).all()
    positive = fe.contributions.max(1) > 0
    assert (a.raw.reshape(3, -1).max(1)[positive] > 0).all()


def test_sae_method_without_an_sae_file_is_a_clear_error(tmp_path: Path) -> None:
    net = _tiny_net()
    images = _images(1)[:, None]
    with pytest.raises(ModelError, match="sae-train"):
        explain(net, images, ["sae"], options=ExplainOptions(bf16=False))
    missing = str(tmp_path / "none.sae.pt")
    with pytest.raises(ModelError, match="none.sae.pt"):
        explain(net, images, ["sae"], options=ExplainOptions(bf16=False, sae_path=missing))
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError):
        load_sae(tmp_path / "bad.pt")
    with pytest.raises(InputError):
        TopKSAE(4, 8, 9)


def test_feature_table_outside_share_and_class_association(trained) -> None:
    net, tokens, sae = trained
    images = _images(48)
    brain = grid_fractions(brain_masks(images), tokens.shape[1:3])
    assert brain.shape == (48, *tokens.shape[1:3]) and 0 < brain.mean() < 1
    assert brain[:, 0, 0].max() < 0.2 and brain[:, 1:3, 1:3].min() > 0.9  # corner vs centre
    labels = np.arange(48) % 4
    table = feature_table(sae, tokens, brain, labels, labels[::-1], 4, m=5)
    active = table.mass > 0
    assert ((table.outside_share[active] >= 0) & (table.outside_share[active] <= 1)).all()
    assert np.isnan(table.outside_share[~active]).all()
    assert table.by_true_class.shape == (64, 4) and table.top_images.shape == (64, 5)
    # An SAE reading a map that is all "outside" puts all its mass outside.
    outside = feature_table(sae, tokens, np.zeros_like(brain), labels, labels, 4)
    np.testing.assert_allclose(outside.outside_share[active], 1.0, rtol=1e-5)
