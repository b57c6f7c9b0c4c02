"""Attention rollout on constructed attention stacks: the order of layers, the residual,
the class token's row and the patch grid."""

from __future__ import annotations

import pytest
import torch

from explain.attention_rollout import attention_rollout, rollout_maps
from vocabulary.errors import InputError


def _attention(t: int, rows: dict[int, int]) -> torch.Tensor:
    """(1, 2 heads, T, T): identity, except that each row in ROWS attends wholly to a token."""
    a = torch.eye(t)
    for src, dst in rows.items():
        a[src] = 0.0
        a[src, dst] = 1.0
    return a.expand(2, t, t)[None].clone()


def test_one_layer_mixes_in_the_residual() -> None:
    # The class token (0) attends wholly to token 2: half of it flows there, half stays.
    rolled = attention_rollout([_attention(5, {0: 2})])
    assert torch.allclose(rolled[0, 0], torch.tensor([0.5, 0.0, 0.5, 0.0, 0.0]))


def test_layers_multiply_from_the_first_to_the_last() -> None:
    # Layer 1: token 2 reads token 3. Layer 2: the class token reads token 2. The class
    # token therefore reaches token 3 through token 2: R = A2' @ A1'.
    stack = [_attention(5, {2: 3}), _attention(5, {0: 2})]
    rolled = attention_rollout(stack)
    assert torch.allclose(rolled[0, 0], torch.tensor([0.5, 0.0, 0.25, 0.25, 0.0]))
    # The other order does not reach token 3.
    reversed_rows = attention_rollout(stack[::-1])[0, 0]
    assert float(reversed_rows[3]) == 0.0
    assert torch.allclose(rolled.sum(dim=-1), torch.ones(1, 5))


def test_heads_are_averaged() -> None:
    a = torch.zeros(1, 2, 3, 3)
    a[0, 0] = torch.eye(3)
    a[0, 1] = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    rolled = attention_rollout([a])
    assert torch.allclose(rolled[0, 0], torch.tensor([0.75, 0.25, 0.0]))


def test_map_is_the_class_row_over_the_patch_grid() -> None:
    # 4 patches on a 2 x 2 grid; the class token reads patch 3 (bottom right).
    maps = rollout_maps([_attention(5, {0: 4})], size=4)
    assert maps.shape == (1, 4, 4)
    assert float(maps[0, 3, 3]) > float(maps[0, 0, 0])
    assert float(maps[0, 0, 0]) == pytest.approx(0.0, abs=1e-6)


def test_bad_stacks_are_refused() -> None:
    with pytest.raises(InputError):
        attention_rollout([])
    with pytest.raises(InputError):
        rollout_maps([_attention(4, {})], size=8)  # 3 patches: no square grid
