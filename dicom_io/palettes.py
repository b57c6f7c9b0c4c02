"""Well-known colour palettes for the Parametric Maps' colour presentation.

The names of the Well-known Color Palettes (PS3.6 Annex B) that pydicom ships as Color
Palette instances, each with the file name of its instance (``get_palette_files``). Kept
apart from the writer so that settings can check a name without importing highdicom.
"""

from __future__ import annotations

PALETTES = {
    "HOT_IRON": "hotiron.dcm",
    "PET": "pet.dcm",
    "HOT_METAL_BLUE": "hotmetalblue.dcm",
    "PET_20_STEP": "pet20step.dcm",
    "SPRING": "spring.dcm",
    "SUMMER": "summer.dcm",
    "FALL": "fall.dcm",
    "WINTER": "winter.dcm",
}
