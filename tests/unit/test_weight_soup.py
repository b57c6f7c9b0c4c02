"""A uniform weight soup as the start of training (``train --average-with``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference.model import build_network
from inference.preprocessing import PreprocessConfig
from inference.training import TrainingData, TrainOptions, fit_network, initial_weights
from vocabulary.errors import InputError, ModelError


def _saved(tmp_path: Path, name: str, seed: int) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    net = build_network(4)
    for module in net.modules():  # BatchNorm statistics differ between the two as well
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()  # type: ignore[union-attr,operator]
    path = tmp_path / name
    torch.save({"model": net.state_dict()}, path)
    return path, net.state_dict()


def test_the_soup_is_the_element_wise_mean_of_both_networks(tmp_path: Path) -> None:
    a_path, a = _saved(tmp_path, "a.pt", 0)
    b_path, b = _saved(tmp_path, "b.pt", 1)
    soup = initial_weights(a_path, b_path)
    key = "class_layers.out.weight"
    assert not torch.equal(a[key], b[key])
    torch.testing.assert_close(soup[key], (a[key] + b[key]) / 2)
    bn = next(k for k in a if k.endswith("running_mean"))
    torch.testing.assert_close(soup[bn], (a[bn] + b[bn]) / 2)
    torch.testing.assert_close(initial_weights(a_path)[key], a[key])


def test_networks_of_other_shapes_are_refused(tmp_path: Path) -> None:
    a_path, _ = _saved(tmp_path, "a.pt", 0)
    other = tmp_path / "other.pt"
    torch.save({"model": build_network(3).state_dict() | {"extra": torch.zeros(1)}}, other)
    with pytest.raises(ModelError, match="not the same architecture"):
        initial_weights(a_path, other)


def test_zero_epochs_keeps_the_soup_untrained(tmp_path: Path) -> None:
    a_path, a = _saved(tmp_path, "a.pt", 0)
    b_path, b = _saved(tmp_path, "b.pt", 1)
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32)).astype(np.float16)
    y = np.array([0, 1, 2, 3], dtype=np.int64)
    data = TrainingData(x, y, x, y, {"n_train": 4}, PreprocessConfig(image_size=32))
    opts = TrainOptions(data_dir=tmp_path, work_dir=tmp_path / "w", epochs=0, progress=False,
                        init_from=a_path, average_with=b_path)  # fmt: skip
    fitted = fit_network(build_network(4), data, opts, None)
    assert fitted.history == []
    key = "class_layers.out.weight"
    torch.testing.assert_close(fitted.net.state_dict()[key], (a[key] + b[key]) / 2)
    assert not (tmp_path / "w" / "checkpoint.pt").exists()


def test_a_soup_or_zero_epochs_without_start_weights_is_refused(tmp_path: Path) -> None:
    b_path, _ = _saved(tmp_path, "b.pt", 1)
    x = np.zeros((4, 32, 32), np.float16)
    y = np.array([0, 1, 2, 3], dtype=np.int64)
    data = TrainingData(x, y, x, y, {"n_train": 4}, PreprocessConfig(image_size=32))
    for kw in ({"average_with": b_path}, {"epochs": 0}):
        opts = TrainOptions(data_dir=tmp_path, work_dir=tmp_path / "w", progress=False, **kw)  # type: ignore[arg-type]
        with pytest.raises(InputError, match="needs --init-from"):
            fit_network(build_network(4), data, opts, None)
