"""The reader, series selection and the SC/PM/SR writers as fuzz targets."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from tests.decision_support import middle_third_decision
from tests.shared_data import DICOM

from .encoding import encode_case, pgbm_seeds
from .mutations import Case, GenerationError
from .outcomes import Crash, FuzzFailure, guarded
from .strategies import SeriesCase


def check_read_result(result: Any, n_inputs: int, target: str, case: str) -> None:
    """Every input yields slices or is refused with a reason; series are consistent."""
    problems = []
    for r in result.rejected:
        if not str(r.reason).strip():
            problems.append(f"refused without a reason: {r.path}")
    n_slices = sum(len(s.slices) for s in result.series)
    if n_slices == 0 and len(result.rejected) < n_inputs:
        problems.append("an input neither gave slices nor was refused")
    for s in result.series:
        for sl in s.slices:
            if sl.pixels.ndim != 2:
                problems.append(f"slice pixels of shape {sl.pixels.shape}")
    if problems:
        raise FuzzFailure(Crash(target, case, "PropertyViolation", "; ".join(problems), []))


def run_reader(case: Case, rules: Any) -> str:
    """read_bytes on the mutated bytes, then series selection on what was read."""
    from dicom_io.reader import read_bytes
    from dicom_io.series_selection import select_series

    try:
        data = encode_case(case).data
    except GenerationError:
        return "not generated"
    desc = case.describe()

    def go() -> str:
        result = read_bytes(data, "fuzz.dcm")
        check_read_result(result, 1, "reader", desc)
        for s in result.series:
            sel = select_series(s, rules)
            if not sel.reason:
                raise FuzzFailure(Crash("reader", desc, "PropertyViolation", "no reason", []))
        return "read" if result.series else "refused"

    return str(guarded("reader", desc, go))


@contextmanager
def series_folder(case: SeriesCase) -> Iterator[Path | None]:
    """A folder with the 24 PGBM-001 slices, the mutated ones written, the others linked."""
    seeds = pgbm_seeds()
    by_index = dict(case.mutated)
    tmp = Path(tempfile.mkdtemp(prefix="bxfuzz-"))
    try:
        for i, name in enumerate(seeds):
            target = tmp / f"{i:03d}.dcm"
            if i in by_index:
                try:
                    target.write_bytes(encode_case(Case(name, by_index[i])).data)
                except GenerationError:
                    yield None
                    return
            else:
                target.symlink_to(DICOM / name)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_selection(case: SeriesCase, rules: Any) -> str:
    """read_paths on a folder (as the worker reads a received study), then selection."""
    from dicom_io.reader import read_paths
    from dicom_io.series_selection import select_series

    desc = case.describe()
    with series_folder(case) as folder:
        if folder is None:
            return "not generated"

        def go() -> str:
            result = read_paths([folder])
            check_read_result(result, len(pgbm_seeds()), "selection", desc)
            selected = 0
            for s in result.series:
                sel = select_series(s, rules)
                if not sel.reason:
                    raise FuzzFailure(
                        Crash("selection", desc, "PropertyViolation", "no reason", [])
                    )
                selected += sel.selected
            return "selected" if selected else "not selected"

        return str(guarded("selection", desc, go))


def fake_decision(n: int, label: str = "glioma") -> Any:
    """A series decision with the middle third eligible, as tests/integration builds them."""
    return middle_third_decision(n, label, "fuzz")


def write_results(series_list: Sequence[Any], out_dir: Path) -> int:
    """SC overlays, Parametric Maps (uint16 and float) and the SR, as plugin.pipeline does.

    Returns the number of files written; they are read back with pydicom.
    """
    from dicom_io.context import ResultContext
    from dicom_io.files import write_datasets
    from dicom_io.parametric_map import MapOptions, build_parametric_map
    from dicom_io.secondary_capture import build_overlays
    from dicom_io.structured_report import SkippedSeries, build_report
    from explain.rendering import add_text
    from plugin.analysis import result_text

    ctx = ResultContext(model_version="9.9.9-fuzz")
    paths: list[Path] = []
    decisions = []
    for series in series_list:
        n = len(series)
        decision = fake_decision(n)
        decisions.append(decision)
        eligible = decision.eligible_indices
        rgbs = [
            np.full((series.slices[i].rows, series.slices[i].columns, 3), 40, np.uint8)
            for i in eligible[:2]
        ]
        caption = ["Finding: Glioma (2 of 2 assessed slices).", "slice model output: glioma 0.91"]
        text = result_text(ctx.model_name, ctx.model_version, caption)
        sc = build_overlays(series, eligible[:2], [add_text(x, text) for x in rgbs], ctx)
        paths += write_datasets(sc, out_dir / "sc")
        rows, cols = series.slices[0].rows, series.slices[0].columns
        maps = np.zeros((n, rows, cols), np.float32)
        maps[:, rows // 3 : rows // 2, cols // 3 : cols // 2] = 0.7
        for float_pixels in (False, True):
            pm = build_parametric_map(series, maps, ctx, MapOptions(float_pixels=float_pixels))
            paths += write_datasets([pm], out_dir / "pm")
    if series_list:
        metrics = {
            s.series_instance_uid: {"gradcam": {"brain_mass": 0.42, "deletion_auc": 0.21}}
            for s in series_list
        }
        sr = build_report(
            list(series_list),
            decisions,
            "glioma",
            "fuzz study decision",
            {"glioma": 0.85, "meningioma": 0.05, "notumor": 0.05, "pituitary": 0.05},
            metrics,
            ctx,
            skipped=[SkippedSeries("1.2.3.4.5", "localizer (ImageType LOCALIZER)")],
        )
        paths += write_datasets([sr], out_dir / "sr")
    for p in paths:
        pydicom.dcmread(p)  # what we wrote must read back
    return len(paths)


def run_writers(case: SeriesCase, rules: Any) -> str:
    """Read the mutated series, select, then write SC/PM/SR for every selected series."""
    from dicom_io.reader import read_paths
    from dicom_io.series_selection import select_series

    desc = case.describe()
    with series_folder(case) as folder:
        if folder is None:
            return "not generated"
        out = folder / "out"

        def go() -> str:
            result = read_paths([p for p in folder.iterdir() if p.suffix == ".dcm"])
            chosen = [s for s in result.series if select_series(s, rules).selected]
            if not chosen:
                return "nothing selected"
            written = write_results(chosen, out)
            return f"written {written}"

        outcome = guarded("writers", desc, go)
        return "refused" if outcome is None else str(outcome)
