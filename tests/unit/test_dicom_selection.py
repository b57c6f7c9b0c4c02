"""Series selection rules on small in-memory series (no files)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicom_io.reader import assemble
from dicom_io.series import Series, Slice
from dicom_io.series_selection import SelectionRules, TagRule, select_series

MR = "1.2.840.10008.5.1.4.1.1.4"
CT = "1.2.840.10008.5.1.4.1.1.2"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def make_series(
    n: int = 12,
    orientation: tuple[float, ...] = AXIAL,
    sop_class: str = MR,
    orientations: Sequence[tuple[float, ...]] | None = None,
    **header: Any,
) -> Series:
    """A series of n 16x16 slices 3 mm apart along the normal, header from keywords."""
    values = {"Modality": "MR", "SeriesDescription": "T1 AX", "ImageType": ["ORIGINAL"]}
    values.update(header)
    normal = np.cross(orientation[:3], orientation[3:])
    slices = []
    for i in range(n):
        ds = Dataset()
        ds.StudyInstanceUID = "1.2.3"
        ds.SeriesInstanceUID = "1.2.3.4"
        ds.SOPInstanceUID = f"1.2.3.4.{i + 1}"
        ds.SOPClassUID = sop_class
        ds.InstanceNumber = i + 1
        for k, v in values.items():
            setattr(ds, k, v)
        ori = orientations[i] if orientations else orientation
        slices.append(
            Slice(
                sop_instance_uid=ds.SOPInstanceUID,
                sop_class_uid=sop_class,
                pixels=np.zeros((16, 16), np.float32),
                dataset=ds,
                image_position=tuple(float(v) for v in normal * 3.0 * i),  # type: ignore[arg-type]
                image_orientation=ori,  # type: ignore[arg-type]
                pixel_spacing=(1.0, 1.0),
                instance_number=i + 1,
            )
        )
    return assemble(slices[::-1])[0]


def test_plain_axial_mr_is_selected_and_sorted() -> None:
    s = make_series(BodyPartExamined="BRAIN")
    sel = select_series(s)
    assert sel.selected, sel.reason
    assert sel.plane == "axial"
    assert [sl.instance_number for sl in s.slices] == list(range(1, 13))
    assert "BodyPartExamined BRAIN" in sel.reason


@pytest.mark.parametrize(
    ("orientation", "plane"), [(AXIAL, "axial"), (SAGITTAL, "sagittal"), (CORONAL, "coronal")]
)
def test_standard_planes_are_accepted(orientation: tuple[float, ...], plane: str) -> None:
    sel = select_series(make_series(orientation=orientation))
    assert sel.selected and sel.plane == plane


def test_oblique_is_rejected_by_default_and_configurable() -> None:
    c, s = np.cos(np.radians(45)), np.sin(np.radians(45))
    oblique = (1.0, 0.0, 0.0, 0.0, c, -s)
    series = make_series(orientation=oblique)
    assert not select_series(series).selected
    assert "oblique" in select_series(series).reason
    rules = SelectionRules(planes=("axial", "sagittal", "coronal", "oblique"))
    assert select_series(series, rules).selected


def test_missing_body_part_and_derived_secondary_are_accepted() -> None:
    s = make_series(ImageType=["DERIVED", "SECONDARY"], StudyDescription="TCIA (via NIfTI)")
    sel = select_series(s)
    assert sel.selected, sel.reason
    assert "not recorded" in sel.reason


@pytest.mark.parametrize(
    ("header", "sop_class", "expected"),
    [
        ({"Modality": "CT"}, CT, "modality CT"),
        ({}, CT, "SOP class"),
        ({"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, MR, "localizer"),
        ({"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]}, MR, "MOSAIC"),
        ({"ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]}, MR, "ADC"),
        ({"ImageType": ["DERIVED", "SECONDARY", "MPR"]}, MR, "MPR"),
        ({"ImageType": ["DERIVED", "PRIMARY", "PROJECTION IMAGE"]}, MR, "PROJECTION IMAGE"),
        ({"Manufacturer": "brainxai"}, MR, "our own output"),
        ({"SeriesDescription": "AI overlay v1 RESEARCH"}, MR, "our own output"),
        ({"BodyPartExamined": "KNEE"}, MR, "not brain/head"),
        ({"StudyDescription": "MR L-SPINE"}, MR, "non-brain"),
        ({"SeriesDescription": "AAHead_Scout"}, MR, "localizer"),
        ({"SeriesDescription": "ep2d_diff DWI"}, MR, "diffusion"),
    ],
)
def test_rejections_give_their_reason(
    header: dict[str, Any], sop_class: str, expected: str
) -> None:
    sel = select_series(make_series(sop_class=sop_class, **header))
    assert not sel.selected
    assert expected.lower() in sel.reason.lower(), sel.reason


def test_brain_in_description_wins_over_non_brain_word() -> None:
    s = make_series(StudyDescription="HEAD AND NECK", SeriesDescription="T2 ax")
    assert select_series(s).selected


def test_too_few_slices() -> None:
    sel = select_series(make_series(n=4))
    assert not sel.selected and "only 4 slices" in sel.reason
    assert select_series(make_series(n=4), SelectionRules(min_slices=3)).selected


def test_few_slices_with_mixed_orientations_is_a_localizer() -> None:
    ors = [AXIAL, AXIAL, SAGITTAL, SAGITTAL, CORONAL, CORONAL]
    sel = select_series(make_series(n=6, orientations=ors))
    assert not sel.selected and "localizer-like" in sel.reason


def test_repeated_positions_are_rejected() -> None:
    s = make_series(n=6)
    dup = replace(s, slices=s.slices + s.slices[:1])
    sel = select_series(dup)
    assert not sel.selected and "distinct positions" in sel.reason


def test_include_and_exclude_rules() -> None:
    s = make_series(SeriesDescription="T1 post contrast", ProtocolName="t1_se_tra")
    only_flair = SelectionRules(include=(TagRule("SeriesDescription", "flair"),))
    assert "no include rule" in select_series(s, only_flair).reason
    no_post = SelectionRules(exclude=(TagRule("SeriesDescription", r"\bpost\b", "no post"),))
    assert select_series(s, no_post).reason == "excluded by rule: no post"
    by_protocol = SelectionRules(include=(TagRule("ProtocolName", "T1_SE"),))
    assert select_series(s, by_protocol).selected
