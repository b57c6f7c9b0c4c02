"""The CLI's progress totals and input checks (issue 13 item 7)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from tqdm import tqdm

from dicom_io.series import Series, Slice
from plugin.commands.analyze import SliceProgress
from plugin.commands.cli import main
from plugin.commands.progress_bar import progress_bar


def series(n: int) -> Series:
    slices = tuple(
        Slice(f"1.2.3.{i}", "1.2.840.10008.5.1.4.1.1.4", np.zeros((4, 4), np.float32), Dataset())
        for i in range(n)
    )
    return Series("1.2", f"1.2.{n}", "MR", "", Dataset(), slices)


def test_analyze_counts_slices_over_all_series() -> None:
    out = io.StringIO()
    bar = tqdm(total=0, file=out, mininterval=0, disable=False)
    progress = SliceProgress(bar)
    first, second = series(3), series(5)
    progress.start([first, second])
    assert bar.total == 8
    progress(first, 2)  # a part of the first series
    assert (bar.n, progress.series) == (2, 1)
    progress(first, 3)  # the first series done
    assert (bar.n, progress.series) == (3, 1)
    progress(second, 5)
    bar.close()
    assert bar.n == 8
    assert "8/8" in out.getvalue() and "series 2/2" in out.getvalue()


def test_quiet_or_no_terminal_means_no_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar(4, "image", "evaluate", quiet=True) as bar:
        bar.update(4)
    with progress_bar(4, "image", "evaluate", quiet=False) as bar:  # stderr is not a TTY here
        bar.update(4)
    assert capsys.readouterr().err == ""


def test_predict_checks_the_files_before_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing model would be the error if the model were loaded first."""
    missing = tmp_path / "image.jpg"
    assert main(["predict", str(missing), "--model", str(tmp_path / "no-model.pt")]) == 1
    err = capsys.readouterr().err
    assert f"{missing}: file not found" in err
    assert "no-model" not in err


def test_analyze_checks_the_map_palette_before_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown palette name is refused at once (exit 2), listing the well-known ones."""
    args = ["analyze", str(tmp_path), "--out", str(tmp_path / "out")]
    code = main([*args, "--model", str(tmp_path / "no-model.pt"), "--map-palette", "RAINBOW"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--map-palette must be one of HOT_IRON, PET" in err
    assert not (tmp_path / "out").exists()
