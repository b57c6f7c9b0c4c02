"""``train --init-from`` and ``--resume`` read weights without unpickling objects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from inference.bundle import load_bundle
from inference.training import _weights_of
from vocabulary.errors import ModelError


class Payload:
    """Unpickling this would run a command (what a hostile weights file can do)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/brainxai-pwned",))


def test_plain_weights_load(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save({"model": {"w": torch.ones(2, dtype=torch.float16)}}, path)
    weights = _weights_of(path)
    assert weights["w"].dtype == torch.float32 and weights["w"].tolist() == [1.0, 1.0]


def test_a_file_with_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = Path("/tmp/brainxai-pwned")
    marker.unlink(missing_ok=True)
    path = tmp_path / "hostile.pt"
    torch.save({"model": {"w": torch.ones(2)}, "extra": Payload()}, path)
    with pytest.raises(ModelError, match="not a plain weights file"):
        _weights_of(path)
    assert not marker.exists()


def test_a_bundle_holding_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = Path("/tmp/brainxai-pwned")
    marker.unlink(missing_ok=True)
    path = tmp_path / "hostile-bundle.pt"
    torch.save({"format": "brainxai-bundle/1", "meta": Payload()}, path)
    with pytest.raises(ModelError, match="cannot read model file"):
        load_bundle(path)
    assert not marker.exists()
