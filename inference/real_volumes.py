"""Real MR volumes as labelled training slices (axial, sagittal, coronal).

A volume (NIfTI, or a DICOM series stacked by the caller) is brought to RAS+ voxel order,
its background is made the darkest value (skull-stripped, z-scored research volumes have
background 0 in the middle of the brain's range; a scanner image has it at the bottom), and
every plane is cut in the display orientation a DICOM viewer uses (PS3.3 C.7.6.2: rows and
columns along the patient's LPS axes), so the slices go through the same ``preprocess`` as
the JPEGs and clinical series.

Labels come from the tumour mask and the study class: a slice whose tumour core covers at
least ``min_tumour_mm2`` and ``min_tumour_share`` of the largest core section is the
study's tumour class; a slice at least ``notumor_gap`` slices from any mask voxel is
``notumor``; slices in between are ambiguous and left out. Normal volumes give notumor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vocabulary.errors import InputError
from vocabulary.identity import CLASSES

PLANES = ("axial", "sagittal", "coronal")
FloatVolume = NDArray[np.float32]


@dataclass(frozen=True)
class VolumeCase:
    """One patient's volume(s) with the study class and an optional tumour mask."""

    case_id: str
    label: str  # a class name
    images: tuple[Path, ...]  # sequences to cut (T1, T1 post-contrast)
    mask: Path | None = None
    core_labels: tuple[int, ...] = ()  # mask values counted as visible tumour; () = all > 0
    brainmask: Path | None = None


@dataclass(frozen=True)
class SliceLabelOptions:
    min_tumour_mm2: float = 60.0
    min_tumour_share: float = 0.15
    notumor_gap: int = 4
    min_head_share: float = 0.15  # of the plane's largest head section
    stride: int = 2  # every n-th slice of each plane
    max_notumor_ratio: float = 1.2  # notumor slices kept per tumour slice (tumour cases)


@dataclass
class RealSlices:
    images: list[FloatVolume] = field(default_factory=list)  # 2-D display slices
    labels: list[int] = field(default_factory=list)
    meta: list[dict[str, Any]] = field(default_factory=list)


def load_ras(path: Path) -> tuple[FloatVolume, tuple[float, float, float]]:
    """A NIfTI volume in RAS+ voxel order, as float32, with its voxel size."""
    import nibabel as nib  # imported when used: the service never needs it

    img = nib.as_closest_canonical(nib.load(str(path)))  # type: ignore[no-untyped-call]
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path.name}: expected a 3-D volume, got shape {data.shape}")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return data, (zooms[0], zooms[1], zooms[2])


def scanner_like(volume: FloatVolume, brain: NDArray[np.bool_] | None = None) -> FloatVolume:
    """Background set below the tissue's minimum and values shifted to start at 0.

    ``brain`` marks tissue; without it, tissue is every voxel that is not exactly 0 (the
    background of skull-stripped research volumes) when such a background exists.
    """
    vol = np.nan_to_num(volume.astype(np.float32))
    if brain is None:
        zero = vol == 0
        brain = ~zero if zero.mean() > 0.05 else np.ones(vol.shape, dtype=bool)
    if not brain.any():
        return np.zeros_like(vol)
    tissue = vol[brain]
    lo, hi = float(tissue.min()), float(tissue.max())
    floor = lo - 0.02 * max(hi - lo, 1e-6)
    out = np.where(brain, vol, floor) - floor
    return out.astype(np.float32)


def plane_slice(volume: NDArray[Any], plane: str, index: int) -> NDArray[Any]:
    """One RAS+ volume slice in viewer orientation.

    Axial: rows anterior to posterior, columns patient right to left; sagittal: rows
    superior to inferior, columns anterior to posterior; coronal: rows superior to
    inferior, columns right to left (the LPS axes of PS3.3 C.7.6.2).
    """
    if plane == "axial":
        return volume[::-1, ::-1, index].T
    if plane == "sagittal":
        return volume[index, ::-1, ::-1].T
    if plane == "coronal":
        return volume[::-1, index, ::-1].T
    raise ValueError(f"unknown plane {plane!r}")


def plane_length(shape: Sequence[int], plane: str) -> int:
    return int(shape[{"sagittal": 0, "coronal": 1, "axial": 2}[plane]])


def _areas(mask: NDArray[np.bool_], plane: str) -> NDArray[np.int64]:
    axes = {"sagittal": (1, 2), "coronal": (0, 2), "axial": (0, 1)}[plane]
    return np.asarray(mask.sum(axis=axes), dtype=np.int64)


def scope_flags(head: NDArray[np.bool_], plane: str) -> NDArray[np.bool_]:
    """Slices a series rule would assess: enough head, central part along the slice axis.

    Axial: above the bottom 35 % (skull base, posterior fossa, sella) and below the top
    15 % (vertex) of the head's extent; sagittal and coronal: the central 60 %. The same
    shares as ``AggregationOptions`` (exclude_bottom, exclude_top, exclude_edges).
    """
    area = _areas(head, plane).astype(np.float64)
    big = area >= 0.2 * max(1.0, float(area.max()))
    idx = np.flatnonzero(big)
    out = np.zeros(len(area), dtype=bool)
    if idx.size < 2:
        return out
    rel = (np.arange(len(area)) - idx[0]) / max(1, idx[-1] - idx[0])
    lo, hi = (0.35, 0.85) if plane == "axial" else (0.2, 0.8)
    out[:] = (area >= 0.5 * float(area.max())) & (rel >= lo) & (rel <= hi)
    return out


def label_plane(
    head: NDArray[np.bool_],
    tumour: NDArray[np.bool_] | None,
    core: NDArray[np.bool_] | None,
    plane: str,
    voxel_mm2: float,
    opts: SliceLabelOptions,
) -> list[tuple[int, bool]]:
    """(index, is_tumour) for the slices of one plane that get a label."""
    head_area = _areas(head, plane)
    keep = head_area >= opts.min_head_share * max(1, int(head_area.max()))
    n = len(head_area)
    if tumour is None or core is None:
        return [(i, False) for i in range(0, n, opts.stride) if keep[i]]
    any_t = _areas(tumour, plane) > 0
    core_area = _areas(core, plane).astype(np.float64) * voxel_mm2
    bar = max(opts.min_tumour_mm2, opts.min_tumour_share * float(core_area.max()))
    near = np.convolve(any_t.astype(int), np.ones(2 * opts.notumor_gap + 1, int), "same") > 0
    out: list[tuple[int, bool]] = []
    for i in range(0, n, opts.stride):
        if not keep[i]:
            continue
        if core_area[i] >= bar:
            out.append((i, True))
        elif not near[i]:
            out.append((i, False))
    return out


def cut_case(
    volumes: Sequence[FloatVolume],
    mask: NDArray[Any] | None,
    case: VolumeCase,
    voxel_mm: tuple[float, float, float],
    opts: SliceLabelOptions,
    rng: np.random.Generator,
) -> RealSlices:
    """Labelled display slices of every plane of every sequence of one case."""
    label = CLASSES.index(case.label)
    notumor = CLASSES.index("notumor")
    out = RealSlices()
    tumour = core = None
    if mask is not None:
        tumour = mask > 0
        core = np.isin(mask, case.core_labels) if case.core_labels else tumour
    head = volumes[0] > float(volumes[0].min()) + 1e-3
    for plane in PLANES:
        a, b = [voxel_mm[k] for k in range(3) if k != {"sagittal": 0, "coronal": 1}.get(plane, 2)]
        chosen = label_plane(head, tumour, core, plane, a * b, opts)
        scope = scope_flags(head, plane)
        pos = {i for i, t in chosen if t}
        neg = [i for i, t in chosen if not t]
        if pos and len(neg) > opts.max_notumor_ratio * len(pos):  # balance per plane
            neg = sorted(rng.choice(neg, int(opts.max_notumor_ratio * len(pos)), replace=False))
        for seq, vol in enumerate(volumes):
            for i in sorted([*pos, *neg]):
                out.images.append(np.ascontiguousarray(plane_slice(vol, plane, int(i))))
                out.labels.append(label if i in pos else notumor)
                out.meta.append(
                    {
                        "case": case.case_id,
                        "plane": plane,
                        "seq": seq,
                        "index": int(i),
                        "in_scope": bool(scope[i]),
                    }
                )
    return out


def discover_cases(root: Path) -> list[VolumeCase]:
    """The cases of a ``volumes/`` folder laid out as in ``../shared/data/volumes``.

    Glioma folders: T1 / T1 post-contrast images (t1, t1n, t1c), a mask (seg, or
    seg-algorithmic) and an optional brainmask; ``normal/*.nii.gz`` are notumor volumes.
    """
    root = Path(root)
    cases: list[VolumeCase] = []
    for folder in sorted((root / "glioma").glob("*")):
        images = tuple(p for n in ("t1c", "t1", "t1n") if (p := folder / f"{n}.nii.gz").is_file())
        if not images:
            continue
        mask = next(
            (p for n in ("seg", "seg-algorithmic") if (p := folder / f"{n}.nii.gz").is_file()),
            None,
        )
        brain = folder / "brainmask.nii.gz"
        cases.append(
            VolumeCase(
                folder.name,
                "glioma",
                images,
                mask,
                _core_labels(folder.name),
                brain if brain.is_file() else None,
            )
        )
    for path in sorted((root / "normal").glob("*.nii.gz")):
        cases.append(VolumeCase(path.name.split(".")[0], "notumor", (path,)))
    return cases


def _core_labels(case_id: str) -> tuple[int, ...]:
    """Mask values that are tumour visible on T1 / T1 post-contrast (not edema alone)."""
    if case_id.startswith("brats-2013"):
        return (1, 3, 4)  # necrosis, non-enhancing, enhancing (2 = edema)
    if case_id.startswith("brats2012"):
        return (2,)  # BRATS 2012: 1 = edema, 2 = tumour
    if case_id == "brats-case-x":
        return (1, 3)  # BraTS 2021+: 1 = necrosis, 2 = edema, 3 = enhancing
    return ()


def iter_volume_cases(
    cases: Sequence[VolumeCase], opts: SliceLabelOptions, seed: int = 0
) -> Iterator[RealSlices]:
    """Cut every NIfTI case (one ``RealSlices`` per case)."""
    rng = np.random.default_rng(seed)
    for case in cases:
        brain = None
        if case.brainmask is not None:
            brain = load_ras(case.brainmask)[0] > 0.5
        vols = []
        zooms = (1.0, 1.0, 1.0)
        for p in case.images:
            data, zooms = load_ras(p)
            vols.append(scanner_like(data, brain))
        mask = load_ras(case.mask)[0].round().astype(np.int16) if case.mask else None
        yield cut_case(vols, mask, case, zooms, opts, rng)


def _stack_affine(
    orientation: Sequence[float], spacing: tuple[float, float, float]
) -> NDArray[np.float64]:
    """Voxel (column, row, slice) -> patient RAS mm of a DICOM stack (PS3.3 C.7.6.2.1.1:
    row cosine, column cosine, slice normal in LPS; RAS flips the first two axes)."""
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    normal = np.cross(row, col)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * spacing[0], col * spacing[1], normal * spacing[2]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def stack_to_ras(
    pixels: FloatVolume,
    orientation: Sequence[float],
    spacing: tuple[float, float, float],
) -> FloatVolume:
    """A (slices, rows, columns) DICOM stack in RAS+ voxel order.

    Voxel (column, row, slice) runs along ImageOrientationPatient's row cosine, its
    column cosine and the slice normal (PS3.3 C.7.6.2.1.1), in patient LPS; RAS flips
    the first two patient axes. ``spacing`` is (column, row, slice) in mm.
    """
    from nibabel.orientations import apply_orientation, io_orientation

    ras = _stack_affine(orientation, spacing)
    vol = np.transpose(pixels, (2, 1, 0))  # (column, row, slice)
    oriented = apply_orientation(vol, io_orientation(ras))  # type: ignore[no-untyped-call]
    return np.ascontiguousarray(oriented, dtype=np.float32)


def ras_spacing(
    orientation: Sequence[float], spacing: tuple[float, float, float]
) -> tuple[float, float, float]:
    """The voxel size of ``stack_to_ras``'s volume, per RAS axis (``spacing`` as there)."""
    from nibabel.orientations import io_orientation

    ornt = io_orientation(_stack_affine(orientation, spacing))  # type: ignore[no-untyped-call]
    out = [0.0, 0.0, 0.0]
    for k in range(3):
        out[int(ornt[k, 0])] = float(spacing[k])
    return out[0], out[1], out[2]
