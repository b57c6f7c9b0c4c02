"""Which series we analyse, with a recorded reason for every decision.

Checks run in a fixed order and the first failing one gives the reason: our own outputs
(so results routed back never loop), modality, SOP class, localizers, Siemens mosaics,
excluded derived image kinds (by ImageType value, PS3.3 C.7.6.1.1.2 / C.8.13.1.1.1; DERIVED as
such is accepted), configurable include/exclude rules, body part, slice geometry, slice count
and imaging plane. The defaults are documented in dicom_io/selection_rules.yaml.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from dicom_io.sequence import T2_LIKE, sequence_of
from dicom_io.series import MR_IMAGE_SOP_CLASSES, Series
from vocabulary.errors import InputError

log = logging.getLogger(__name__)

PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"  # PS3.4 Table B.5-1

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "selection_rules.yaml"
_EDGE = r"(?<![A-Z0-9])"
_END = r"(?![A-Z0-9])"


@dataclass(frozen=True)
class TagRule:
    """A regular expression (case-insensitive search) on one header attribute by keyword."""

    tag: str
    pattern: str
    name: str = ""

    def matches(self, value: str | None) -> bool:
        return value is not None and re.search(self.pattern, value, re.IGNORECASE) is not None

    @property
    def label(self) -> str:
        return self.name or f"{self.tag} ~ /{self.pattern}/"


DEFAULT_EXCLUDE = (
    TagRule(
        "SeriesDescription",
        r"locali[sz]er|scout|survey|3[- ]?plane|tri[- ]?pilot",
        "localizer/scout by description",
    ),
    TagRule(
        "SeriesDescription",
        r"calibration|\bcal\b|asset|pure|field[ _]?map|shim",
        "calibration/field map by description",
    ),
    TagRule(
        "SeriesDescription",
        r"\b(dwi|dti|diffusion|adc|trace|tensor)\b|_dwi|_dti|_adc",
        "diffusion by description",
    ),
    TagRule(
        "SeriesDescription",
        r"perfusion|\b(perf|dsc|dce|asl|pasl|pcasl|bold|fmri|rest)\b",
        "perfusion/functional by description",
    ),
)
DEFAULT_EXCLUDED_IMAGE_TYPES = (
    "MPR",
    "PROJECTION IMAGE",
    "MIP",
    "MINIP",
    "CPR",
    "CURVED",
    "REFORMATTED",
    "SUBTRACTION",
    "SUB",
    "ADC",
    "EADC",
    "FA",
    "TRACEW",
    "TRACE",
    "DIFFUSION",
    "CBF",
    "CBV",
    "MTT",
    "TTP",
    "PERFUSION",
    "PHASE MAP",
    "VELOCITY",
    "COLLAPSE",
)
BRAIN_PATTERN = _EDGE + r"(BRAIN|HEAD|SKULL|CEREBR\w*|CRANI\w*|NEURO\w*|PITUITARY|SELLA)" + _END
NON_BRAIN_PATTERN = (
    _EDGE
    + (
        r"([CLT]-?SPINE|SPINE|KNEE|ABDOMEN|ABD|CHEST|THORAX|PELVIS|BREAST|CARDIAC|HEART|LIVER|"
        r"PROSTATE|SHOULDER|HIP|ANKLE|WRIST|ELBOW|HAND|FOOT|LEG|ARM|KIDNEY|PANCREAS|WHOLEBODY)"
    )
    + _END
)


@dataclass(frozen=True)
class SelectionRules:
    modalities: tuple[str, ...] = ("MR",)
    sop_classes: frozenset[str] = MR_IMAGE_SOP_CLASSES
    min_slices: int = 5
    planes: tuple[str, ...] = ("axial", "sagittal", "coronal")
    reject_mosaic: bool = True
    localizer_image_types: tuple[str, ...] = ("LOCALIZER",)
    localizer_max_slices: int = 10
    excluded_image_types: tuple[str, ...] = DEFAULT_EXCLUDED_IMAGE_TYPES
    own_manufacturers: tuple[str, ...] = ("brainxai",)
    own_description_prefix: str = "AI "
    brain_pattern: str = BRAIN_PATTERN
    non_brain_pattern: str = NON_BRAIN_PATTERN
    include: tuple[TagRule, ...] = ()
    exclude: tuple[TagRule, ...] = DEFAULT_EXCLUDE


@dataclass(frozen=True)
class Selection:
    selected: bool
    reason: str
    plane: str = field(default="")


def header_text(series: Series, keyword: str) -> str | None:
    """A header attribute as text (multi-valued joined with backslashes), None if absent."""
    value = series.header.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, str | int | float):
        return str(value)
    try:
        return "\\".join(str(v) for v in value)
    except TypeError:
        return str(value)


def select_series(series: Series, rules: SelectionRules | None = None) -> Selection:
    """Decide whether a series is analysed; the reason is always filled in."""
    r = rules or SelectionRules()
    plane = series.plane if series.slices else "unknown"
    for check in (_own_output, _modality, _image_kind, _tag_rules, _body_part, _geometry):
        why = check(series, r)
        if why is not None:
            log.info("series %s not selected: %s", series.series_instance_uid, why)
            return Selection(False, why, plane)
    body = _body_evidence(series, r)
    reason = f"MR {plane}, {len(series)} slices, {body}"
    return Selection(True, reason, plane)


def _own_output(s: Series, r: SelectionRules) -> str | None:
    manufacturer = (header_text(s, "Manufacturer") or "").strip().lower()
    if manufacturer in {m.lower() for m in r.own_manufacturers}:
        return f"our own output (Manufacturer {manufacturer!r}): never re-processed"
    if s.series_description.startswith(r.own_description_prefix):
        return f"our own output (SeriesDescription starts {r.own_description_prefix!r})"
    software = (header_text(s, "SoftwareVersions") or "").lower()
    if any(m.lower() in software for m in r.own_manufacturers):
        return "our own output (SoftwareVersions names brainxai): never re-processed"
    return None


def own_object_reason(series: Series, rules: SelectionRules | None = None) -> str | None:
    """Why an (uploaded) image is one of our own result objects, None if it is not.

    Besides the selection's own-output rule (Manufacturer, SeriesDescription prefix,
    SoftwareVersions): the Parametric Map Storage SOP class (PS3.4 B.5; a map is never an
    MR image) and our research-use statement in ImageComments (0020,4000).
    """
    why = _own_output(series, rules or SelectionRules())
    if why is not None:
        return why
    if PARAMETRIC_MAP_STORAGE in series.sop_class_uids:
        return "a Parametric Map (an explanation heatmap), not an MR image"
    comments = (header_text(series, "ImageComments") or "").upper()
    if "RESEARCH" in comments and "BRAINXAI" in comments:
        return "our own output (ImageComments carries brainxai's research-use statement)"
    return None


def single_image_refusal(series: Series) -> str | None:
    """Why no class may be given for an image of ``series`` analysed on its own, or None.

    Our own result objects, images that are not MR (Modality (0008,0060)) and contrasts the
    tumour classes were not trained on (T2, FLAIR, diffusion: ``dicom_io.sequence``).
    """
    why = own_object_reason(series)
    if why is not None:
        return why
    modality = series.modality.upper()
    if modality and modality != "MR":
        return f"modality {modality} is not MR"
    sequence = sequence_of(series)
    if sequence in T2_LIKE:
        return (
            f"{sequence.upper()} image: the tumour classes were trained on T1 post-contrast "
            "images, so the model's answer here is not reliable"
        )
    return None


def _modality(s: Series, r: SelectionRules) -> str | None:
    if s.modality.upper() not in r.modalities:
        return f"modality {s.modality or 'missing'} is not {'/'.join(r.modalities)}"
    others = sorted(s.sop_class_uids - r.sop_classes)
    if others:
        return f"SOP class {others[0]} is not an MR image storage class"
    return None


def _image_kind(s: Series, r: SelectionRules) -> str | None:
    types = set(s.image_type)
    hit = types & set(r.localizer_image_types)
    if hit:
        return f"localizer (ImageType {'/'.join(sorted(hit))})"
    if r.reject_mosaic and s.is_mosaic:
        return "Siemens MOSAIC (tiled EPI/diffusion/fMRI slices): not a structural series"
    hit = types & set(r.excluded_image_types)
    if hit:
        return f"derived image kind not analysed (ImageType {'/'.join(sorted(hit))})"
    return None


def _tag_rules(s: Series, r: SelectionRules) -> str | None:
    for rule in r.exclude:
        if rule.matches(header_text(s, rule.tag)):
            return f"excluded by rule: {rule.label}"
    if r.include and not any(rule.matches(header_text(s, rule.tag)) for rule in r.include):
        return "matches no include rule"
    return None


def _body_part(s: Series, r: SelectionRules) -> str | None:
    body = header_text(s, "BodyPartExamined")
    if body:
        if re.search(r.brain_pattern, body.upper()):
            return None
        return f"BodyPartExamined {body} is not brain/head"
    descriptions = _descriptions(s)
    if re.search(r.brain_pattern, descriptions):
        return None
    hit = re.search(r.non_brain_pattern, descriptions)
    if hit:
        return f"description names a non-brain body part ({hit.group(0)})"
    return None


def _descriptions(s: Series) -> str:
    kws = ("StudyDescription", "SeriesDescription", "ProtocolName")
    return " | ".join((header_text(s, k) or "") for k in kws).upper()


def _body_evidence(s: Series, r: SelectionRules) -> str:
    body = header_text(s, "BodyPartExamined")
    if body:
        return f"BodyPartExamined {body}"
    if re.search(r.brain_pattern, _descriptions(s)):
        return "brain/head named in descriptions"
    return "body part not recorded (accepted)"


def _geometry(s: Series, r: SelectionRules) -> str | None:
    n = len(s)
    if n == 0:
        return "no decodable slices"
    orientations = {s_.image_orientation for s_ in s.slices}
    if None in orientations:
        return "orientation unknown (no ImageOrientationPatient)"
    ori = np.asarray([o for o in orientations if o is not None], dtype=np.float64)
    if np.abs(ori - ori[0]).max() > 1e-3:
        if n <= r.localizer_max_slices:
            return f"localizer-like: {n} slices with mixed orientations"
        return f"slices have mixed orientations ({'/'.join(sorted(s.planes))})"
    if s.shape is None:
        return "slices differ in rows/columns"
    positions = [p for p in s.positions if p is not None]
    if len(positions) != n:
        return "slice positions unknown (no ImagePositionPatient)"
    distinct = len(np.unique(np.round(np.asarray(positions), 2)))
    if distinct < n:
        return f"{n} slices at only {distinct} distinct positions (echoes, phases or repeats)"
    if n < r.min_slices:
        return f"only {n} slices (need {r.min_slices})"
    if s.plane not in r.planes:
        return f"{s.plane} plane not accepted (accepted: {', '.join(r.planes)})"
    return None


class _RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tag: str
    pattern: str
    name: str = ""


class _RulesFile(BaseModel):
    """The YAML file's schema (pydantic at the edge; turned into SelectionRules)."""

    model_config = ConfigDict(extra="forbid")
    modalities: list[str] | None = None
    sop_classes: list[str] | None = None
    min_slices: int | None = None
    planes: list[str] | None = None
    reject_mosaic: bool | None = None
    localizer_image_types: list[str] | None = None
    localizer_max_slices: int | None = None
    excluded_image_types: list[str] | None = None
    own_manufacturers: list[str] | None = None
    own_description_prefix: str | None = None
    brain_pattern: str | None = None
    non_brain_pattern: str | None = None
    include: list[_RuleModel] | None = None
    exclude: list[_RuleModel] | None = None


def load_rules(path: Path | str | None = None) -> SelectionRules:
    """Rules from a YAML file; None reads dicom_io/selection_rules.yaml (or built-in defaults).

    Keys left out of the file keep their defaults; unknown keys are an error.
    """
    p = Path(path) if path is not None else DEFAULT_RULES_FILE
    if path is None and not p.is_file():
        return SelectionRules()
    try:
        raw = yaml.safe_load(p.read_text()) or {}
        parsed = _RulesFile.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise InputError(f"cannot read selection rules {p}: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in parsed.model_dump(exclude_none=True).items():
        if key in ("include", "exclude"):
            values[key] = tuple(TagRule(**v) for v in value)
        elif key == "sop_classes":
            values[key] = frozenset(value)
        elif isinstance(value, list):
            values[key] = tuple(str(v).upper() if key.endswith("image_types") else v for v in value)
        else:
            values[key] = value
    for rule in values.get("include", ()) + values.get("exclude", ()):
        _compile(rule.pattern, p)
    for key in ("brain_pattern", "non_brain_pattern"):
        if key in values:
            _compile(values[key], p)
    return SelectionRules(**values)


def _compile(pattern: str, p: Path) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InputError(f"invalid regular expression {pattern!r} in {p}: {exc}") from exc
