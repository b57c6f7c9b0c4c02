"""An explanation's own checks: which of its quality figures fail.

Judged on the figures of explain.quality (one image, or a series' mean over its quality
slices), by the API, the Structured Report and ``explain-eval`` alike, so they live here.
A figure that was not measured (absent, None or NaN) is not judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

BRAIN_MASS_MIN = 0.5  # below: most of the positive attribution lies outside the head

# check name -> (figure, its random-map reference, True when lower is better)
CURVE_CHECKS = {
    "deletion": ("deletion_auc", "deletion_auc_random", True),
    "road_deletion": ("road_deletion_auc", "road_deletion_auc_random", True),
    "insertion": ("insertion_auc", "insertion_auc_random", False),
}
CHECKS = ("brain_mass", *CURVE_CHECKS)


def _value(figures: Mapping[str, float | None], name: str) -> float | None:
    v = figures.get(name)
    return float(v) if v is not None and math.isfinite(float(v)) else None


def failed_checks(figures: Mapping[str, float | None]) -> tuple[str, ...]:
    """Names (of ``CHECKS``) the explanation fails: brain mass below 0.5, or a deletion /
    ROAD deletion curve area above (insertion: below) the random map's on the same image."""
    failed = []
    mass = _value(figures, "brain_mass")
    if mass is not None and mass < BRAIN_MASS_MIN:
        failed.append("brain_mass")
    for check, (name, reference, lower_is_better) in CURVE_CHECKS.items():
        value, ref = _value(figures, name), _value(figures, reference)
        if value is None or ref is None:
            continue
        if (value > ref) if lower_is_better else (value < ref):
            failed.append(check)
    return tuple(failed)
