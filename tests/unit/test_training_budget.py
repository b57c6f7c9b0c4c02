"""fit_network trains any registry network on prepared data and honours a time budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.architectures import build
from inference.preprocessing import PreprocessConfig
from inference.training import TrainingData, TrainOptions, fit_network


def _data(n: int = 16, size: int = 32) -> TrainingData:
    rng = np.random.default_rng(0)
    x = rng.random((n, size, size)).astype(np.float16)
    y = np.arange(n, dtype=np.int64) % 4
    return TrainingData(x, y, x[:8], y[:8], {"n_train": n, "n_val": 8},
                        PreprocessConfig(image_size=size))  # fmt: skip


def _opts(tmp_path: Path) -> TrainOptions:
    return TrainOptions(data_dir=tmp_path, work_dir=tmp_path / "work", epochs=2, image_size=32,
                        batch_size=8, progress=False)  # fmt: skip


def test_without_a_budget_every_epoch_runs(tmp_path: Path) -> None:
    fitted = fit_network(build("vit", 32), _data(), _opts(tmp_path), None)
    assert len(fitted.history) == 2 and not fitted.stopped_by_budget
    assert all("epoch_share" not in row for row in fitted.history)
    assert (tmp_path / "work" / "checkpoint.pt").is_file()


def test_a_spent_budget_stops_inside_the_first_epoch(tmp_path: Path) -> None:
    fitted = fit_network(build("vit", 32), _data(), _opts(tmp_path), None, budget_seconds=1e-9)
    assert fitted.stopped_by_budget
    assert len(fitted.history) == 1
    assert fitted.history[0]["epoch_share"] < 1.0
    assert "val_acc" in fitted.history[0]
