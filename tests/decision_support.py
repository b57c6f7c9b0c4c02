"""A series decision as the DICOM writers receive it (the middle third of the slices
eligible), shared by the writer tests and the fuzzer's writer target."""

from __future__ import annotations

import math

from vocabulary.decisions import SeriesDecision, SliceDecision


def middle_third_decision(n: int, label: str = "glioma", reason: str = "test") -> SeriesDecision:
    """``label`` for a series of ``n`` slices, the middle third (at least one) eligible."""
    eligible = set(range(n // 3, max(2 * n // 3, n // 3 + 1)))
    slices = tuple(
        SliceDecision(i, i in eligible, "eligible" if i in eligible else "skull base", label, 0.9)
        for i in range(n)
    )
    probs = {"glioma": 0.85, "meningioma": 0.05, "notumor": 0.05, "pituitary": 0.05}
    if label == "indeterminate":
        probs = dict.fromkeys(probs, math.nan)
    return SeriesDecision(label, f"{reason} decision {label}", probs, slices, {})
