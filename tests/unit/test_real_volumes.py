"""Real volumes as labelled slices: orientation, labels from masks, scope flags."""

from __future__ import annotations

import numpy as np

from inference.real_volumes import (
    SliceLabelOptions,
    VolumeCase,
    cut_case,
    label_plane,
    plane_slice,
    scanner_like,
    scope_flags,
    stack_to_ras,
)


def test_plane_slices_follow_the_viewer_orientation() -> None:
    vol = np.zeros((4, 5, 6), np.float32)  # RAS+: x right, y anterior, z superior
    vol[3, 4, 5] = 1.0  # right, anterior, superior corner
    ax = plane_slice(vol, "axial", 5)
    assert ax.shape == (5, 4) and ax[0, 0] == 1.0  # top row anterior, left column = right
    sag = plane_slice(vol, "sagittal", 3)
    assert sag.shape == (6, 5) and sag[0, 0] == 1.0  # top superior, left column anterior
    cor = plane_slice(vol, "coronal", 4)
    assert cor.shape == (6, 4) and cor[0, 0] == 1.0  # top superior, left column = right


def test_scanner_like_puts_the_background_below_the_tissue() -> None:
    z = np.zeros((8, 8, 8), np.float32)
    z[2:6, 2:6, 2:6] = np.linspace(-2, 3, 64).reshape(4, 4, 4)  # z-scored tissue, bg 0
    out = scanner_like(z)
    assert out.min() == 0.0
    assert out[0, 0, 0] == 0.0
    assert out[2:6, 2:6, 2:6].min() > 0.0


def test_labels_from_the_mask_skip_the_ambiguous_margin() -> None:
    head = np.zeros((30, 30, 30), bool)
    head[5:25, 5:25, 5:25] = True
    tumour = np.zeros_like(head)
    tumour[10:20, 10:20, 12:16] = True  # axial slices 12-15
    opts = SliceLabelOptions(stride=1, notumor_gap=3, min_tumour_mm2=10.0)
    labels = dict(label_plane(head, tumour, tumour, "axial", 1.0, opts))
    assert all(labels[i] for i in range(12, 16))
    assert all(i not in labels for i in (9, 10, 11, 16, 17, 18))  # near the tumour: left out
    assert labels[6] is False and labels[22] is False


def test_scope_flags_exclude_skull_base_and_vertex() -> None:
    head = np.zeros((20, 20, 40), bool)
    head[2:18, 2:18, 0:40] = True
    flags = scope_flags(head, "axial")
    assert not flags[:13].any()  # bottom 35 %
    assert flags[15:33].all()
    assert not flags[-5:].any()  # top 15 %


def test_cut_case_marks_tumour_and_notumor_slices() -> None:
    vol = np.random.default_rng(0).random((24, 24, 24)).astype(np.float32) + 1
    vol[:2], vol[-2:] = 0, 0
    mask = np.zeros(vol.shape, np.int16)
    mask[8:16, 8:16, 10:14] = 4
    case = VolumeCase("c", "glioma", (), None, (4,))
    rng = np.random.default_rng(0)
    out = cut_case(
        [vol], mask, case, (1.0, 1.0, 1.0), SliceLabelOptions(stride=1, min_tumour_mm2=5), rng
    )
    assert set(out.labels) == {0, 2}  # glioma and notumor
    assert len(out.images) == len(out.labels) == len(out.meta)
    assert {m["plane"] for m in out.meta} == {"axial", "sagittal", "coronal"}


def test_dicom_stack_to_ras_matches_the_patient_axes() -> None:
    stack = np.zeros((3, 4, 5), np.float32)  # (slices, rows, columns), axial, rows posterior
    stack[2, 0, 0] = 1.0  # top slice, first row (anterior), first column (patient right)
    ras = stack_to_ras(stack, (1, 0, 0, 0, 1, 0), (1.0, 1.0, 1.0))
    assert ras.shape == (5, 4, 3)
    assert ras[4, 3, 2] == 1.0  # right-most, anterior-most, superior-most voxel
