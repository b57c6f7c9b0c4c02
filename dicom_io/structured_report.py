"""The study's AI result as a TID 1500 Measurement Report in a Comprehensive SR.

Comprehensive SR IOD (PS3.3 A.35.3) whose content is PS3.16 TID 1500 "Measurement Report",
built with highdicom's ``highdicom.sr`` templates, following the IHE AI Results (AIR)
profile where it applies (device observer, algorithm identification, tracking identifiers,
qualitative findings, references to the images and to our other result objects):

    CONTAINER Imaging Measurement Report (DCM 126000, TID 1500)
      Language; Observer Type = Device (TID 1002/1004: UID, name, manufacturer, model name
        with the model version, serial number); Procedure Reported = MRI (LN 25056-3)
      CONTAINER Imaging Measurements
        Measurement Group (TID 1501) "Study result"
          Tracking Identifier + Tracking UID (TID 4108); Finding (DCM 121071) = class or
          Indeterminate (SCT 82334004); Finding Site = Brain (SCT); Algorithm Name, Version,
          Manufacturer (TID 4019); NUM mean series probability per class (UCUM "1", derivation
          Mean, the first INFERRED FROM the outline below); TEXT decision sentence and TEXT
          research statement (both DCM 121106 Comment);
          TEXT one per series not analysed
        Measurement Group "Series <number> <description>"     (one per analysed series)
          Tracking; Finding; Finding Site; Algorithm; IMAGE Source of Measurement (DCM 121112)
          per assessed slice; NUM mean slice probability per class; NUM slices in the series,
          assessed slices and slices voting for the finding; TEXT decision sentence
        Measurement Group "<method> explanation of series <number>"   (one per method)
          Tracking; Finding = Visual explanation (DCM 130401); Measurement Method = the
          explanation method; Algorithm; IMAGE Source of Measurement = our Parametric Map of
          that method; IMAGE "Heatmap overlay image" per Secondary Capture showing it;
          NUM explanation-quality figures (UCUM "1"); CODE heatmap mostly outside the brain
          = Yes/No (SCT), Yes if its mass inside the brain is below 0.5; CODE explanation
          fails its own quality checks = Yes/No (vocabulary.explanation_checks: brain mass
          low, or deletion, ROAD deletion or insertion worse than the random map's)

The first NUM of every group is INFERRED FROM (TID 300/320) a region on the deciding slice
(dicom_io.finding_region): TID 1500 viewers such as OHIF show a group only on the image a
SCOORD in it references, with its label beside that region. The study group outlines the
head, a series group points at a spot on the head's midline and an explanation group
outlines the top of its method's attribution map on that slice (``attention``), so their
labels stand apart.

Codes are in dicom_io/codes.py (standard where pydicom's dictionary has one, else the private
scheme 99BRAINXAI declared in Coding Scheme Identification Sequence). The TEXT items beyond
TID 1501's rows carry what a reader needs and TID 1501 has no coded place for (the reason of
an indeterminate result, the research-use statement). Every referenced instance (source
slices, SC and PM) is listed in Current Requested Procedure Evidence Sequence (PS3.3
C.17.2.3). Patient and study attributes come from the first evidence header as checked by
dicom_io.sanitise (invalid values dropped or emptied, warnings to the caller).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.sr import RelationshipTypeValues as Rel
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import ParametricMapStorage, SecondaryCaptureImageStorage

from dicom_io import codes
from dicom_io.context import (
    ResultContext,
    fix_value_representations,
    mark_research,
    quiet_person_names,
)
from dicom_io.finding_region import (
    attention_outline,
    centre,
    deciding_index,
    deciding_series,
    series_outline,
)
from dicom_io.sanitise import record, sanitise_source, valid_text
from dicom_io.series import Series
from dicom_io.uids import derived_uid, instance_uid, series_uid
from vocabulary.decisions import SeriesDecision
from vocabulary.errors import InputError
from vocabulary.explanation_checks import BRAIN_MASS_MIN, failed_checks
from vocabulary.sentence import series_sentence, study_sentence

log = logging.getLogger(__name__)

OBJECT_TYPE = "sr"
OUTSIDE_BRAIN_THRESHOLD = BRAIN_MASS_MIN

Metrics = Mapping[str, Mapping[str, Mapping[str, float]]]  # series UID -> method -> name -> value
# series UID -> method -> relevance (0..1) on the series' deciding slice, its pixel grid
Attention = Mapping[str, Mapping[str, NDArray[np.float32]]]


@dataclass(frozen=True)
class SkippedSeries:
    series_instance_uid: str
    reason: str


@dataclass(frozen=True)
class ResultObject:
    """A Secondary Capture or Parametric Map instance written for one analysed series."""

    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    method: str  # the explanation method whose heatmap it holds, e.g. "gradcam"

    @classmethod
    def of(cls, ds: Dataset, method: str) -> ResultObject:
        return cls(str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), method)

    @property
    def is_overlay(self) -> bool:
        return self.sop_class_uid == SecondaryCaptureImageStorage

    @property
    def is_map(self) -> bool:
        return self.sop_class_uid == ParametricMapStorage

    def evidence(self, study_instance_uid: str) -> Dataset:
        """The attributes an evidence sequence item needs (PS3.3 C.17.2.3)."""
        ds = Dataset()
        ds.StudyInstanceUID = study_instance_uid
        ds.SeriesInstanceUID = self.series_instance_uid
        ds.SOPClassUID = self.sop_class_uid
        ds.SOPInstanceUID = self.sop_instance_uid
        return ds


@dataclass(frozen=True)
class _Report:
    """What every measurement group shares."""

    ctx: ResultContext
    algorithm: hd.sr.AlgorithmIdentification


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value[:1024] or "-", relationship_type=Rel.CONTAINS
    )


def _measurement(name: Code, value: float, mean: bool = False) -> hd.sr.Measurement:
    derivation = codes.MEAN if mean else None
    return hd.sr.Measurement(
        name=name, value=float(value), unit=codes.NO_UNITS, derivation=derivation
    )


def _tracking(
    identifier: str, source_uid: str, ctx: ResultContext, kind: str
) -> hd.sr.TrackingIdentifier:
    uid = derived_uid(source_uid, ctx.model_version, f"{OBJECT_TYPE}-track-{kind}")
    return hd.sr.TrackingIdentifier(uid=uid, identifier=identifier[:64])


def _probabilities(probs: Mapping[str, float], of_series: bool) -> list[hd.sr.Measurement]:
    return [
        _measurement(codes.probability_code(label, of_series), value, mean=True)
        for label, value in probs.items()
        if value is not None and math.isfinite(value)
    ]


def _located(
    measurements: Sequence[hd.sr.Measurement], region: hd.sr.CoordinatesForMeasurement
) -> list[hd.sr.Measurement]:
    """``measurements`` with ``region`` as INFERRED FROM of the first (TID 300), which is
    where a viewer finds the image and place of the group (dicom_io.finding_region)."""
    if not measurements:
        return []
    first = measurements[0]
    located = hd.sr.Measurement(
        name=first.name,
        value=first.value,
        unit=first.unit,
        derivation=first.derivation,
        referenced_coordinates=[region],
    )
    return [located, *measurements[1:]]


def _group(
    r: _Report,
    tracking: hd.sr.TrackingIdentifier,
    finding: Code,
    measurements: Sequence[hd.sr.Measurement],
    region: hd.sr.CoordinatesForMeasurement,
    extra: Iterable[Dataset] = (),
    **kwargs: Any,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """A TID 1501 group on the brain with our algorithm, located by ``region`` on its first
    measurement; ``extra`` items are appended."""
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        finding_type=finding,
        finding_sites=[hd.sr.FindingSite(codes.BRAIN)],
        algorithm_id=r.algorithm,
        measurements=_located(measurements, region) or None,
        **kwargs,
    )
    group[0].ContentSequence.extend(extra)
    return group


def _study_group(
    r: _Report,
    study_uid: str,
    label: str,
    reason: str,
    probs: Mapping[str, float],
    skipped: Sequence[SkippedSeries],
    region: hd.sr.CoordinatesForMeasurement,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    extra = [
        _text(codes.DECISION, study_sentence(label, reason)),
        _text(codes.COMMENT, r.ctx.statement),
    ]
    extra += [_text(codes.NOT_ANALYSED, f"{s.series_instance_uid}: {s.reason}") for s in skipped]
    return _group(
        r,
        _tracking("Study result", study_uid, r.ctx, "study"),
        codes.class_code(label),
        _probabilities(probs, of_series=True),
        region,
        extra,
    )


def _series_name(series: Series) -> str:
    number = series.header.get("SeriesNumber")
    text = series.series_description
    parts = ["Series", str(number) if number not in (None, "") else "-"]
    if text and valid_text(text):
        parts.append(text)
    return " ".join(parts)


def _series_group(
    r: _Report, series: Series, decision: SeriesDecision
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    eligible = decision.eligible_indices
    counts = [
        _measurement(codes.N_SLICES, len(series)),
        _measurement(codes.N_ASSESSED, len(eligible)),
    ]
    votes = decision.votes.get(decision.label)
    if decision.label != "indeterminate" and votes is not None:
        counts.append(_measurement(codes.N_VOTES, votes))
    sources = [
        hd.sr.SourceImageForMeasurementGroup(
            referenced_sop_class_uid=series.slices[i].sop_class_uid,
            referenced_sop_instance_uid=series.slices[i].sop_instance_uid,
            referenced_frame_numbers=_frames(series.slices[i].frame_number),
        )
        for i in eligible
    ]
    return _group(
        r,
        _tracking(_series_name(series), series.series_instance_uid, r.ctx, "series"),
        codes.class_code(decision.label),
        [*_probabilities(decision.probabilities, of_series=False), *counts],
        centre(series.slices[deciding_index(series, decision)]),
        [_text(codes.DECISION, series_sentence(decision))],
        source_images=sources or None,
    )


def _frames(frame_number: int | None) -> list[int] | None:
    return [frame_number] if frame_number is not None else None


def _explanation_group(
    r: _Report,
    series: Series,
    method: str,
    values: Mapping[str, float],
    objects: Sequence[ResultObject],
    region: hd.sr.CoordinatesForMeasurement,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    measurements = [
        _measurement(codes.metric_code(name), float(value))
        for name, value in values.items()
        if name not in codes.DERIVED_METRICS and value is not None and math.isfinite(float(value))
    ]
    evaluations = []
    mass = values.get("brain_mass")
    if mass is not None and math.isfinite(float(mass)):
        outside = float(mass) < OUTSIDE_BRAIN_THRESHOLD
        evaluations.append(
            hd.sr.QualitativeEvaluation(codes.OUTSIDE_BRAIN, codes.YES if outside else codes.NO)
        )
        failed = failed_checks(values)
        evaluations.append(
            hd.sr.QualitativeEvaluation(codes.FAILS_CHECKS, codes.YES if failed else codes.NO)
        )
    maps = [
        hd.sr.SourceImageForMeasurementGroup(o.sop_class_uid, o.sop_instance_uid)
        for o in objects
        if o.method == method and o.is_map
    ]
    overlays = [
        hd.sr.ImageContentItem(
            name=codes.OVERLAY,
            referenced_sop_class_uid=o.sop_class_uid,
            referenced_sop_instance_uid=o.sop_instance_uid,
            relationship_type=Rel.CONTAINS,
        )
        for o in objects
        if o.method == method and o.is_overlay
    ]
    name = f"{codes.method_code(method).meaning} explanation of {_series_name(series)}"
    return _group(
        r,
        _tracking(name, series.series_instance_uid, r.ctx, f"xai-{method}"),
        codes.VISUAL_EXPLANATION,
        measurements,
        region,
        overlays,
        method=codes.method_code(method),
        qualitative_evaluations=evaluations or None,
        source_images=maps or None,
    )


def _observation_context(ctx: ResultContext) -> hd.sr.ObservationContext:
    """The algorithm as device observer (TID 1002 and 1004, PS3.16)."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid(ctx.model_name, ctx.model_version, "device"),
        name=ctx.algorithm_name[:64],
        manufacturer_name=ctx.manufacturer,
        model_name=f"{ctx.model_name} {ctx.model_version}"[:64],
        serial_number=ctx.device_serial_number,
    )
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept.from_code(codes.DEVICE),
        observer_identifying_attributes=device,
    )
    return hd.sr.ObservationContext(observer_device_context=observer)


def build_report(
    series_list: Sequence[Series],
    decisions: Sequence[SeriesDecision],
    study_label: str,
    study_reason: str,
    study_probs: Mapping[str, float],
    metrics: Metrics,
    ctx: ResultContext,
    skipped: Sequence[SkippedSeries] = (),
    source_warnings: list[str] | None = None,
    results: Mapping[str, Sequence[ResultObject]] | None = None,
    attention: Attention | None = None,
) -> Dataset:
    """A TID 1500 report of one study's result; decisions[i] belongs to series_list[i].

    ``results`` maps a series UID to the SC and PM instances written for it (referenced in
    its explanation groups and listed as evidence). ``attention`` holds each method's map on
    the series' deciding slice (finding_region.deciding_index), outlined by its explanation
    group. Invalid source values found on the way are added to ``source_warnings`` (once each).
    """
    if not series_list or len(series_list) != len(decisions):
        raise InputError(f"{len(series_list)} series but {len(decisions)} decisions")
    studies = {s.study_instance_uid for s in series_list}
    if len(studies) != 1:
        raise InputError(f"series from {len(studies)} studies in one report")
    study_uid = studies.pop()
    results = results or {}
    algorithm = hd.sr.AlgorithmIdentification(
        name=ctx.algorithm_name, version=ctx.model_version, manufacturer=ctx.manufacturer
    )
    r = _Report(ctx, algorithm)
    decider = deciding_series(decisions, study_label)
    study_region = series_outline(series_list[decider], decisions[decider])
    groups = [
        _study_group(r, study_uid, study_label, study_reason, study_probs, skipped, study_region)
    ]
    for s, d in zip(series_list, decisions, strict=True):
        groups.append(_series_group(r, s, d))
        objects = results.get(s.series_instance_uid, ())
        values = metrics.get(s.series_instance_uid, {})
        maps = (attention or {}).get(s.series_instance_uid, {})
        deciding = s.slices[deciding_index(s, d)]
        for method in dict.fromkeys([*values, *(o.method for o in objects)]):
            m = maps.get(method)
            region = attention_outline(deciding, m) if m is not None else series_outline(s, d)
            groups.append(_explanation_group(r, s, method, values.get(method, {}), objects, region))
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(ctx),
        procedure_reported=codes.PROCEDURE,
        imaging_measurements=groups,
        title=codes.REPORT_TITLE,
    )
    sr = _document(report, series_list, decisions, results, ctx, skipped, source_warnings)
    log.info("built SR for study %s with %d series", study_uid, len(series_list))
    return sr


def _document(
    report: hd.sr.MeasurementReport,
    series_list: Sequence[Series],
    decisions: Sequence[SeriesDecision],
    results: Mapping[str, Sequence[ResultObject]],
    ctx: ResultContext,
    skipped: Sequence[SkippedSeries],
    source_warnings: list[str] | None,
) -> Dataset:
    """The Comprehensive SR around ``report``, in the source study, with its evidence."""
    study_uid = series_list[0].study_instance_uid
    sources = _evidence(series_list, decisions)
    texts = [_series_name(s) for s in series_list] + [k.reason for k in skipped]
    texts += [d.reason for d in decisions]
    src = sanitise_source(sources[0], texts)
    record(src.warnings, source_warnings, "SR")
    ours = [o.evidence(study_uid) for objects in results.values() for o in objects]
    with quiet_person_names():
        sr = hd.sr.ComprehensiveSR(
            evidence=[src.dataset, *sources[1:], *ours],
            content=report,
            series_instance_uid=series_uid(study_uid, ctx.model_version, OBJECT_TYPE),
            series_number=ctx.series_number(OBJECT_TYPE, None),
            sop_instance_uid=instance_uid(study_uid, ctx.model_version, OBJECT_TYPE),
            instance_number=1,
            manufacturer=ctx.manufacturer,
            institution_name=ctx.institution_name,
            is_complete=True,
            is_final=False,
            is_verified=False,
            specific_character_set=src.specific_character_set,
        )
    sr.SeriesDescription = ctx.series_description("report", "")
    sr.CodingSchemeIdentificationSequence = [codes.scheme_identification()]
    mark_research(
        sr,
        ctx,
        f"Classification by {ctx.model_name} {ctx.model_version} with explanation quality "
        "figures. Research use only, not for diagnosis.",
    )
    fix_value_representations(sr)
    return sr


def _evidence(series_list: Sequence[Series], decisions: Sequence[SeriesDecision]) -> list[Dataset]:
    """Headers of every referenced source instance (Current Requested Procedure Evidence)."""
    seen: dict[str, Dataset] = {}
    for s, d in zip(series_list, decisions, strict=True):
        # the assessed slices, and the slice the series' region is drawn on (the middle
        # slice when none was assessed: it is referenced too, so it must be evidence)
        for idx in [*d.eligible_indices, deciding_index(s, d)]:
            sl = s.slices[idx]
            seen.setdefault(sl.sop_instance_uid, sl.dataset)
    return list(seen.values())
