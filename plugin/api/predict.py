"""``POST /v1/predict`` work: decode an upload, analyse it (plugin.analysis), encode images.

Content is identified by its bytes (plugin.sniff), never by the file name. A DICOM upload is
one PS3.10 file; a multi-frame instance or a file holding several slices is reduced to its
middle slice (``frame_count // 2``, slices sorted along the normal by dicom_io). A raw
dataset without the 128-byte preamble and "DICM" prefix (PS3.10 section 7.1) is accepted
only if it starts with a group 0002 or 0008 tag and dicom_io can parse it.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dicom_io.reader import read_bytes
from dicom_io.series_selection import single_image_refusal
from explain.attribution import Attribution
from explain.options import DEFAULT_METHODS as OPTION_DEFAULTS
from explain.options import METHODS, ExplainOptions, parse_methods
from explain.rendering import raw_png16
from inference.preprocessing import MAX_PIXELS, Preprocessed, View, to_grey
from inference.scope_gate import out_of_scope_reason
from plugin import metrics
from plugin.analysis import (
    classify_and_explain,
    display_image,
    measure_quality,
    prepare,
    render_overlay,
    stack,
)
from plugin.api.schemas import MethodExplanation, ModelRef, PredictResponse, SourceInfo
from plugin.model_service import LoadedModel
from plugin.sniff import decode_raster, kind_of
from vocabulary.errors import InputError
from vocabulary.explanation_checks import failed_checks
from vocabulary.sentence import image_sentence

log = logging.getLogger(__name__)

MAX_METHODS = len(METHODS)
DEFAULT_METHODS = OPTION_DEFAULTS[:1]  # at most one map per request by default
RAW_DICOM_STARTS = (b"\x02\x00", b"\x08\x00")  # group 0002 or 0008, little endian


class UnsupportedMediaType(InputError):
    """The bytes are not PNG, JPEG or DICOM (HTTP 415)."""


class UploadTooLarge(InputError):
    """The upload exceeds settings.max_upload_bytes (HTTP 413)."""


QUALITY_LEVELS = ("fast", "full")


@dataclass(frozen=True)
class PredictOptions:
    """``quality="fast"``: brain mass only (no extra forward passes); ``"full"`` adds the
    deletion/insertion curves of explain.quality (about 2 x steps x (methods + 1) forwards).
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    quality: str = "fast"
    display_max_side: int = 512  # the grey image and overlays are downscaled beyond this
    explain: ExplainOptions = ExplainOptions()


@dataclass(frozen=True)
class DecodedUpload:
    kind: str
    pixels: NDArray[Any]  # 2-D grey or (H, W, 3) RGB
    frame_index: int = 0
    frame_count: int = 1
    series_instance_uid: str | None = None
    refusal: str | None = None  # why no class may be given (our own object, not MR, T2...)
    view: View = View()  # a DICOM image's stored orientation to the upright one


def request_methods(text: str | None) -> tuple[str, ...]:
    """The ``methods`` query ('gradcam,saliency'); none given: DEFAULT_METHODS."""
    return parse_methods(text, default=DEFAULT_METHODS)


def decode_upload(data: bytes, name: str = "upload") -> DecodedUpload:
    """Decode PNG/JPEG/DICOM bytes; InputError (or a subclass) says why not."""
    if not data:
        raise InputError("the uploaded file is empty")
    kind = kind_of(data)
    if kind in ("png", "jpeg"):
        _check_raster_size(data)
        return DecodedUpload(kind, decode_raster(data))
    if kind == "dicom" or data[:2] in RAW_DICOM_STARTS:
        return _decode_dicom(data, name)
    raise UnsupportedMediaType(
        "unsupported content: expected a PNG, a JPEG or a DICOM PS3.10 file (judged by the "
        "file's bytes, not its name)"
    )


def _check_raster_size(data: bytes) -> None:
    """Refuse decompression bombs from the header before decoding any pixels."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError as exc:
        raise UploadTooLarge(f"image too large: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot decode image: {exc}") from exc
    if w * h > MAX_PIXELS:
        raise UploadTooLarge(f"image too large: {w}x{h} pixels")


def _decode_dicom(data: bytes, name: str) -> DecodedUpload:
    result = read_bytes(data, name)
    if not result.series:
        why = "; ".join(r.reason for r in result.rejected) or "no image data"
        if data[128:132] != b"DICM" and "not a DICOM" in why:
            raise UnsupportedMediaType("unsupported content: not PNG, JPEG or DICOM")
        raise InputError(f"DICOM file not usable: {why}")
    series = result.series[0]
    index = len(series.slices) // 2
    return DecodedUpload(
        "dicom", series.slices[index].pixels, index, len(series.slices),
        series.series_instance_uid, single_image_refusal(series), View(*series.upright_turns),
    )  # fmt: skip


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def encode_png(array: NDArray[Any]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def predict_upload(
    model: LoadedModel, upload: DecodedUpload, options: PredictOptions, lock: Any
) -> PredictResponse:
    """Classify and explain one decoded upload (model use serialised by ``lock``).

    ``lock`` is the model service's PriorityLock taken at normal priority: a routed study
    waiting for the model goes first, so API load delays studies by one request at most.
    """
    clf = model.classifier
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    grey = to_grey(upload.pixels)
    (pre,) = prepare(clf, [grey], upload.view)
    images = stack([pre])
    timings["preprocess"] = time.perf_counter() - t0
    with lock:
        t1 = time.perf_counter()
        pred, maps = classify_and_explain(clf, images, options.methods, options.explain)
        target = int(pred.probs[0].argmax())
        why = upload.refusal or out_of_scope_reason(upload.pixels, pre, pred, 0, clf)
        timings["inference_and_explain"] = time.perf_counter() - t1
        t3 = time.perf_counter()
        quality = explanation_quality(clf, pre, maps, options.quality)
        timings["quality"] = time.perf_counter() - t3
    t4 = time.perf_counter()
    shown = display_image(grey, options.display_max_side)
    explanations = {m: _explanation(maps[m], pre, shown, quality[m]) for m in options.methods}
    timings["render"] = time.perf_counter() - t4
    for stage, secs in timings.items():
        metrics.observe_stage(f"api_{stage}", secs)
    classes = clf.meta.classes
    o = model.origin
    if why is not None:
        log.info("predict: no class for an out-of-scope image: %s", why)
    return PredictResponse(
        predicted_class=None if why else classes[target],
        model_output=classes[target],
        reason=why,
        sentence=image_sentence(classes[target], float(pred.probs[0][target]), why),
        probabilities={c: float(p) for c, p in zip(classes, pred.probs[0], strict=True)},
        model=ModelRef(
            name=o.name, version=o.version, registry_version=o.registry_version, source=o.source
        ),  # fmt: skip
        ood_score=float(pred.ood_score[0]),
        source=SourceInfo(
            kind=upload.kind,
            rows=grey.shape[0],
            columns=grey.shape[1],
            frame_index=upload.frame_index,
            frame_count=upload.frame_count,
            series_instance_uid=upload.series_instance_uid,
        ),  # fmt: skip
        image_png=data_url(encode_png((shown * 255.0 + 0.5).astype(np.uint8))),
        explanations=explanations,
        timings_ms={k: round(v * 1000.0, 2) for k, v in timings.items()},
    )


def _explanation(
    attribution: Attribution,
    pre: Preprocessed,
    shown: NDArray[np.float32],
    quality: dict[str, float | None],
) -> MethodExplanation:
    """Overlay on the displayed source image (no colour bar, so it aligns) and raw map."""
    t0 = time.perf_counter()
    norm = np.asarray(attribution.normalised[0], dtype=np.float32)
    rgb = render_overlay(shown, pre, norm, colorbar=False)
    return MethodExplanation(
        method=attribution.method,
        quality=quality,
        failed_checks=list(failed_checks(quality)),
        overlay_png=data_url(encode_png(rgb)),
        raw_png16=data_url(raw_png16(np.asarray(attribution.raw[0]))),
        seconds=round(time.perf_counter() - t0, 4),
    )


def explanation_quality(
    clf: Any, pre: Preprocessed, maps: dict[str, Attribution], level: str
) -> dict[str, dict[str, float | None]]:
    """Per-method metrics of explain.quality; "fast" skips the deletion/insertion curves."""
    full = level == "full"
    rows = measure_quality(clf, stack([pre]), maps, pre.head_mask[None], curves=full)
    if full:
        return {m: {k: _finite(v) for k, v in rows[m][0].to_dict().items()} for m in maps}
    return {
        m: {"brain_mass": rows[m][0].brain_mass, "head_fraction": rows[m][0].head_fraction}
        for m in maps
    }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
