"""Deterministic UIDs, plane geometry and VR clean-up (pure, no files)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID

from dicom_io.context import ResultContext, finish_object, fix_value_representations
from dicom_io.reader import canonical_normal
from dicom_io.secondary_capture import patient_orientation
from dicom_io.series import plane_of
from dicom_io.uids import derived_uid, instance_uid, series_uid


def test_uids_are_deterministic_valid_and_distinct() -> None:
    a = series_uid("1.2.3.4", "1.0", "sc")
    assert a == series_uid("1.2.3.4", "1.0", "sc")
    assert UID(a).is_valid and len(a) <= 64 and a.startswith("2.25.")
    others = {
        series_uid("1.2.3.5", "1.0", "sc"),
        series_uid("1.2.3.4", "1.1", "sc"),
        series_uid("1.2.3.4", "1.0", "pm"),
        instance_uid("1.2.3.4", "1.0", "sc", 0),
        instance_uid("1.2.3.4", "1.0", "sc", 1),
    }
    assert a not in others and len(others) == 5
    assert derived_uid("1.2", "v", "sc", None) != derived_uid("1.2", "v", "sc", 0)
    with pytest.raises(ValueError):
        derived_uid("", "v", "sc")


@pytest.mark.parametrize(
    ("orientation", "plane"),
    [
        ((1, 0, 0, 0, 1, 0), "axial"),
        ((0, 1, 0, 0, 0, -1), "sagittal"),
        ((1, 0, 0, 0, 0, -1), "coronal"),
        ((1, 0, 0, 0, 0.7071, -0.7071), "oblique"),
        ((1, 0, 0, 1, 0, 0), "unknown"),
        (None, "unknown"),
    ],
)
def test_plane_of(orientation: tuple[float, ...] | None, plane: str) -> None:
    assert plane_of(orientation) == plane  # type: ignore[arg-type]


def test_canonical_normal_points_superior_for_axial() -> None:
    flipped = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # row x column = -z
    assert np.allclose(canonical_normal(flipped), (0, 0, 1))


def test_patient_orientation_letters() -> None:
    assert patient_orientation((1, 0, 0, 0, 1, 0)) == ("L", "P")
    assert patient_orientation((0, 1, 0, 0, 0, -1)) == ("P", "F")


def test_long_decimal_strings_and_bad_ages_are_repaired() -> None:
    ds = Dataset()
    ds.ImagePositionPatient = ["-91.4495864331908", "1", "-142.505487236053"]
    ds.SliceThickness = "0.666666686534882"
    ds.PatientAge = "42"
    fix_value_representations(ds)
    assert all(len(str(v)) <= 16 for v in ds.ImagePositionPatient)
    assert abs(float(ds.ImagePositionPatient[0]) + 91.4495864331908) < 1e-9
    assert len(str(ds.SliceThickness)) <= 16
    assert ds.PatientAge == "042Y"


def test_finish_object_sets_laterality_unknown_without_body_part() -> None:
    out = finish_object(Dataset(), Dataset())
    assert out.Laterality == ""
    src = Dataset()
    src.BodyPartExamined = "BRAIN"
    out = finish_object(Dataset(), src)
    assert out.BodyPartExamined == "BRAIN" and "Laterality" not in out


def test_context_descriptions_fit_and_start_with_ai() -> None:
    ctx = ResultContext(model_version="2024.1")
    text = ctx.series_description("overlay", "x" * 100)
    assert text.startswith("AI ") and len(text) <= 64 and "2024.1" in text
    assert "NOT FOR DIAGNOSIS" in ctx.statement and "2024.1" in ctx.statement
    kinds = ["sc", "sc-saliency", "pm-gradcam", "pm-saliency", "pm-gradcam-float", "sr"]
    kinds += ["pm-gradcam-gxi", "pm-gradcam-gxi-float"]
    assert len({ctx.series_number(k, 11) for k in kinds}) == len(kinds)
