"""A DICOM series as a RAS+ volume: the bridge from the reader to the volume tools.

``brainxai real-slices`` cuts labelled slices from it and ``brainxai volume-to-dicom`` writes
it again in another plane; both read a 3D series this one way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dicom_io.reader import read_paths
from inference.real_volumes import FloatVolume, ras_spacing, stack_to_ras
from vocabulary.errors import InputError


def dicom_volume(folder: Path, name: str) -> tuple[FloatVolume, tuple[float, float, float]]:
    """The longest DICOM series under ``folder`` as a RAS+ volume and its voxel size (mm per
    RAS axis). Slices are stacked in the order of ``stack_to_ras``'s slice normal."""
    series = read_paths([folder]).series
    if not series:
        raise InputError(f"{name}: no readable DICOM series")
    s = max(series, key=lambda x: len(x.slices))
    first = s.slices[0]
    if first.image_orientation is None or first.pixel_spacing is None or s.normal is None:
        raise InputError(f"{name}: series without geometry")
    pos = [x.position_mm or 0.0 for x in s.slices]
    step = float(np.median(np.diff(pos))) if len(pos) > 1 else 1.0
    spacing = (first.pixel_spacing[1], first.pixel_spacing[0], abs(step) or 1.0)
    stack = np.stack([x.pixels for x in s.slices]).astype(np.float32)
    ori = first.image_orientation
    if float(np.dot(np.cross(ori[:3], ori[3:6]), s.normal)) < 0:
        stack = stack[::-1]  # the reader sorts along the canonical normal, opposite here
    return stack_to_ras(stack, ori, spacing), ras_spacing(ori, spacing)
