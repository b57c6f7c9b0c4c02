"""Stray slices: a few instances of a series that do not share its geometry.

Real archives put the odd instance into an otherwise sound series: a localizer or a
reformatted image sent under the series' UID, an instance resized by a router, one whose
ImageOrientationPatient or ImagePositionPatient (PS3.3 C.7.6.2) was lost. Refusing the whole
series for it loses a study that can be read; analysing the instance with the others would
put a slice of another geometry into the stack. So a small minority (at most a tenth of the
series) that differs from the majority in orientation, size or known position is set aside,
and the series notes say how many and why. Anything larger is left for series selection to
refuse (a three-plane localizer, a series of mixed sizes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence

from dicom_io.series import Slice

MAX_STRAY_SHARE = 0.1
MIN_KEPT = 3


def _orientation(s: Slice) -> Hashable:
    o = s.image_orientation
    return None if o is None else tuple(round(float(v), 3) for v in o)


def _size(s: Slice) -> Hashable:
    return (s.rows, s.columns)


def _has_position(s: Slice) -> Hashable:
    return True if s.image_position is not None else None


CHECKS: tuple[tuple[str, Callable[[Slice], Hashable]], ...] = (
    ("orientation unlike the series' (or none)", _orientation),
    ("rows/columns unlike the series'", _size),
    ("no ImagePositionPatient", _has_position),
)


def set_aside_strays(items: Sequence[Slice]) -> tuple[list[Slice], list[str]]:
    """The slices that share the series' geometry, and a note per kind set aside."""
    kept = list(items)
    notes: list[str] = []
    for why, key in CHECKS:
        counts = Counter(key(s) for s in kept)
        if len(counts) < 2:
            continue
        majority, count = counts.most_common(1)[0]
        if majority is None:
            continue  # most slices lack it (None: unknown): nothing sound to keep
        strays = len(kept) - count
        if strays > max(1, int(MAX_STRAY_SHARE * len(items))) or count < MIN_KEPT:
            continue
        kept = [s for s in kept if key(s) == majority]
        notes.append(f"{strays} of {len(items)} slices set aside: {why}")
    return kept, notes
