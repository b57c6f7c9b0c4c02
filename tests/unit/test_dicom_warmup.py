"""The highdicom warm-up loads the standard tables (a second call is then cached)."""

from __future__ import annotations

from highdicom import _standard_utils as standard

from dicom_io.warmup import warm_up


def test_warm_up_fills_the_caches() -> None:
    warm_up()
    assert standard.get_module_attribute_map.cache_info().currsize == 1
    assert warm_up() < 1.0  # cached: no second load
