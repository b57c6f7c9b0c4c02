"""Learning without forgetting: the distillation term of the training loss and its targets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.calibration import softmax
from inference.model import build_network
from inference.preprocessing import PreprocessConfig
from inference.training import TrainingData, TrainOptions, _batch_loss, teacher_targets


def _opts(tmp_path: Path, **kw: object) -> TrainOptions:
    return TrainOptions(data_dir=tmp_path, work_dir=tmp_path / "w", progress=False, **kw)  # type: ignore[arg-type]


def _ce(logits: torch.Tensor, y: torch.Tensor, opts: TrainOptions) -> float:
    return float(F.cross_entropy(logits, y, label_smoothing=opts.label_smoothing))


def test_without_targets_the_loss_is_the_cross_entropy(tmp_path: Path) -> None:
    opts = _opts(tmp_path, distill_from=tmp_path / "t.pt")
    logits, y = torch.randn(4, 4), torch.tensor([0, 1, 2, 3])
    assert float(_batch_loss(logits, y, None, opts)) == _ce(logits, y, opts)
    no_rows = torch.full((4, 4), float("nan"))  # real slices only: nothing to distil
    assert float(_batch_loss(logits, y, no_rows, opts)) == _ce(logits, y, opts)


def test_the_term_is_zero_when_the_student_matches_the_teacher(tmp_path: Path) -> None:
    opts = _opts(tmp_path, distill_temperature=2.0)
    logits, y = torch.randn(3, 4), torch.tensor([0, 2, 1])
    same = torch.softmax(logits / 2.0, dim=1)
    assert abs(float(_batch_loss(logits, y, same, opts)) - _ce(logits, y, opts)) < 1e-5
    other = torch.softmax(-logits / 2.0, dim=1)
    assert float(_batch_loss(logits, y, other, opts)) > _ce(logits, y, opts) + 0.1


def test_only_rows_with_targets_are_distilled(tmp_path: Path) -> None:
    opts = _opts(tmp_path, distill_weight=1.0)
    logits, y = torch.randn(2, 4), torch.tensor([1, 3])
    soft = torch.softmax(logits / opts.distill_temperature, dim=1)
    soft[1] = float("nan")  # a real slice: its (far) target row is ignored
    assert abs(float(_batch_loss(logits, y, soft, opts)) - _ce(logits, y, opts)) < 1e-5
    off = replace(opts, distill_weight=0.0)
    soft[0] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    assert float(_batch_loss(logits, y, soft, off)) == _ce(logits, y, opts)


def test_teacher_targets_cover_the_jpegs_and_leave_the_real_slices(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = build_network(4)
    path = tmp_path / "teacher.pt"
    torch.save({"model": teacher.state_dict()}, path)
    rng = np.random.default_rng(1)
    x = rng.random((5, 32, 32)).astype(np.float16)
    y = np.array([0, 1, 2, 3, 2], dtype=np.int64)
    data = TrainingData(x, y, x[:2], y[:2], {"n_train": 3}, PreprocessConfig(image_size=32))
    opts = _opts(tmp_path, distill_from=path, distill_temperature=3.0)
    soft = teacher_targets(opts, data)
    assert soft is not None and soft.shape == (5, 4)
    assert np.isnan(soft[3:]).all()  # rows 3, 4: real slices appended after the JPEGs
    teacher.eval()
    with torch.inference_mode():
        logits = teacher(torch.from_numpy(x[:3].astype(np.float32))[:, None]).numpy()
    np.testing.assert_allclose(soft[:3], softmax(logits, 3.0), atol=2e-2)
    assert teacher_targets(_opts(tmp_path), data) is None
