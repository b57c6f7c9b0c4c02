"""Load highdicom's DICOM-standard tables once at start-up.

highdicom reads large JSON tables of the standard (IODs, modules, attributes) lazily; the
first object written pays several seconds for it. A service calls ``warm_up`` at start so
that the first routed study does not.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def warm_up() -> float:
    """Load the tables; returns the seconds it took."""
    from highdicom import _standard_utils as standard

    start = time.perf_counter()
    standard.get_sop_class_iod_map()
    standard.get_iod_module_map()
    standard.get_module_attribute_map()
    standard.get_anatomic_region_map()
    seconds = time.perf_counter() - start
    log.info("highdicom standard tables loaded in %.1f s", seconds)
    return seconds
