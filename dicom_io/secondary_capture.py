"""Secondary Capture overlays: one RGB image (MR + heatmap, burned-in text) per slice.

Secondary Capture Image IOD (PS3.3 A.8.1) built with highdicom. Each image references its
source slice in SourceImageSequence (PS3.3 C.7.6.1, General Image Module) and carries
BurnedInAnnotation YES because the model, its version, the class and the research-use
statement are drawn into the pixels. Patient, study and equipment attributes come from the
slice's header as checked by dicom_io.sanitise: invalid values are dropped or emptied, and
the warnings (attribute and rule, never the value) go to the caller's ``source_warnings``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from dicom_io.context import (
    ResultContext,
    finish_object,
    mark_research,
    quiet_person_names,
    source_series_number,
)
from dicom_io.sanitise import SanitisedSource, record, sanitise_source
from dicom_io.series import Orientation, Series, Slice
from dicom_io.uids import derived_uid, series_uid
from vocabulary.errors import InputError

log = logging.getLogger(__name__)

OBJECT_TYPE = "sc"


def patient_orientation(orientation: Orientation | None) -> tuple[str, str] | None:
    """PatientOrientation (PS3.3 C.7.6.1.1.1) of the row and column directions, e.g. (L, P).

    Only the dominant direction is given (one letter each): highdicom accepts no oblique
    letter pairs such as "PF".
    """
    if orientation is None:
        return None
    out = []
    for vec in (orientation[:3], orientation[3:]):
        k = int(np.argmax(np.abs(np.asarray(vec))))
        out.append(("L", "P", "H")[k] if vec[k] > 0 else ("R", "A", "F")[k])
    return out[0], out[1]


def build_overlays(
    series: Series,
    slice_indices: Sequence[int],
    rgb_images: Sequence[NDArray[np.uint8]],
    ctx: ResultContext,
    method: str = "",
    heatmap_label: str = "Grad-CAM",
    source_warnings: list[str] | None = None,
) -> list[Dataset]:
    """One SC image per selected slice of ``series`` (indices into ``series.slices``).

    ``rgb_images[i]`` is the finished (H, W, 3) uint8 overlay for ``slice_indices[i]``: the
    caller has drawn in the model, version, class and BURNED_IN_DISCLAIMER (dicom_io draws
    nothing). A non-empty ``method`` (e.g. "saliency") makes a separate series with its own
    UIDs, for a second explanation method;
    ``heatmap_label`` names the method whose heatmap the overlays show (recorded in the
    objects' Derivation Description). Invalid source values found on the way are added to
    ``source_warnings`` (once each).
    """
    if len(slice_indices) != len(rgb_images):
        raise InputError(f"{len(slice_indices)} slice indices but {len(rgb_images)} images")
    kind = f"{OBJECT_TYPE}-{method}" if method else OBJECT_TYPE
    uid = series_uid(series.series_instance_uid, ctx.model_version, kind)
    number = ctx.series_number(kind, source_series_number(series.header))
    warnings = source_warnings if source_warnings is not None else []
    sources: dict[int, SanitisedSource] = {}  # frames of one instance share its header
    out = []
    for i, (idx, rgb) in enumerate(zip(slice_indices, rgb_images, strict=True)):
        if not 0 <= idx < len(series):
            raise InputError(f"slice index {idx} outside series of {len(series)} slices")
        image = _check_rgb(rgb)
        sl = series.slices[idx]
        src = sources.get(id(sl.dataset)) or sanitise_source(sl.dataset)
        sources[id(sl.dataset)] = src
        record(src.warnings, warnings, "SC")
        target = (kind, uid, number, heatmap_label)
        out.append(_one(sl, src, image, ctx, target, i + 1))
    log.info("built %d SC overlays for series %s", len(out), series.series_instance_uid)
    return out


def _check_rgb(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"overlay must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)


def _one(
    sl: Slice,
    src: SanitisedSource,
    rgb: NDArray[np.uint8],
    ctx: ResultContext,
    target: tuple[str, str, int, str],
    instance_number: int,
) -> Dataset:
    kind, uid, number, heatmap_label = target
    same_grid = rgb.shape[:2] == (sl.rows, sl.columns)
    sop_uid = derived_uid(sl.sop_instance_uid, ctx.model_version, kind, sl.frame_number)
    with quiet_person_names():
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=src.dataset,
            pixel_array=rgb,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=uid,
            series_number=number,
            sop_instance_uid=sop_uid,
            instance_number=instance_number,
            manufacturer=ctx.manufacturer,
            pixel_spacing=sl.pixel_spacing if same_grid else None,  # type: ignore[arg-type]
            patient_orientation=patient_orientation(sl.image_orientation) or ("L", "P"),
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            specific_character_set=src.specific_character_set,
        )
    what = f"{kind.removeprefix('sc-')} overlay" if kind != OBJECT_TYPE else "overlay"
    sc.SeriesDescription = ctx.series_description(what, src.text("SeriesDescription"))
    sc.ImageType = ["DERIVED", "SECONDARY", "OVERLAY"]
    sc.BurnedInAnnotation = "YES"
    sc.RecognizableVisualFeatures = "NO"
    sc.ImageComments = ctx.statement
    sc.ConversionType = "WSD"
    mark_research(
        sc,
        ctx,
        f"{ctx.model_name} {ctx.model_version}: {heatmap_label} heatmap over the source MR slice; "
        "class and probability burned in. Research use only, not for diagnosis.",
    )
    ref = Dataset()
    ref.ReferencedSOPClassUID = sl.sop_class_uid
    ref.ReferencedSOPInstanceUID = sl.sop_instance_uid
    if sl.frame_number is not None:
        ref.ReferencedFrameNumber = sl.frame_number
    sc.SourceImageSequence = [ref]
    if sl.position_mm is not None:
        sc.ImageComments = f"{ctx.statement} Source slice at {sl.position_mm:.1f} mm."
    return finish_object(sc, src.dataset)
