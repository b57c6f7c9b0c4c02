"""The study's AI result as a Comprehensive SR (PS3.3 A.35.3), built with highdicom.

Content tree (all items CONTAINS children of their container; codes in dicom_io/codes.py):

    CONTAINER  Brain MR tumour classification (AI, research use)       [99BRAINXAI]
      TEXT     Comment: research-use statement naming the model version
      TEXT     Algorithm Name / Algorithm Version (DCM 111001 / 111003), Model name
      CONTAINER Study classification
        CODE   Finding (DCM 121071) = class code or Indeterminate (SCT 82334004)
        TEXT   Reason;  NUM Probability of <class> x 4 (UCUM "1")
      CONTAINER Series classification            (one per analysed series)
        UIDREF Series Instance UID;  TEXT Series description
        CODE   Finding;  TEXT Reason;  NUM probabilities;  NUM slices / eligible slices
        IMAGE  Source of Measurement (DCM 121112), one per eligible slice
        CONTAINER Explanation quality            (one per method)
          TEXT Explanation method;  NUM brain_mass, deletion/insertion AUC, ...
          CODE Heatmap mass mostly outside the brain = Yes/No (SCT), Yes if brain_mass < 0.5
      CONTAINER Series not analysed              (one per skipped series)
        UIDREF Series Instance UID;  TEXT Reason

A free Comprehensive SR rather than TID 1500 because "indeterminate" with its reason, the
skipped series and the disclaimer have no place in TID 1500's measurement groups.

Patient and study attributes come from the first evidence header as checked by
dicom_io.sanitise (invalid values dropped or emptied, warnings to the caller); a source
series description that breaks its VR is reported as "-".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
from highdicom.sr import RelationshipTypeValues as Rel
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from dicom_io import codes
from dicom_io.context import (
    ResultContext,
    fix_value_representations,
    mark_research,
    quiet_person_names,
)
from dicom_io.sanitise import record, sanitise_source, valid_text
from dicom_io.series import Series
from dicom_io.uids import instance_uid, series_uid
from vocabulary.decisions import SeriesDecision
from vocabulary.errors import InputError

log = logging.getLogger(__name__)

OBJECT_TYPE = "sr"
OUTSIDE_BRAIN_THRESHOLD = 0.5

Metrics = Mapping[str, Mapping[str, Mapping[str, float]]]  # series UID -> method -> name -> value


@dataclass(frozen=True)
class SkippedSeries:
    series_instance_uid: str
    reason: str


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value[:1024] or "-", relationship_type=Rel.CONTAINS
    )


def _num(name: Code, value: float) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(
        name=name, value=float(value), unit=codes.NO_UNITS, relationship_type=Rel.CONTAINS
    )


def _code(name: Code, value: Code) -> hd.sr.CodeContentItem:
    return hd.sr.CodeContentItem(name=name, value=value, relationship_type=Rel.CONTAINS)


def _container(name: Code, items: Sequence[Any], root: bool = False) -> hd.sr.ContainerContentItem:
    c = hd.sr.ContainerContentItem(name=name, relationship_type=None if root else Rel.CONTAINS)
    c.ContentSequence = hd.sr.ContentSequence(items)
    return c


def _probabilities(probs: Mapping[str, float]) -> list[Dataset]:
    out: list[Dataset] = []
    for label, value in probs.items():
        if value is None or not math.isfinite(value):
            continue
        name = codes.PROBABILITY_CODES.get(label) or codes.private(f"BXAI-P-{label}", label)
        out.append(_num(name, value))
    if not out:
        out.append(_text(codes.COMMENT, "probabilities not available (no eligible slices)"))
    return out


def _quality(method: str, values: Mapping[str, float]) -> hd.sr.ContainerContentItem:
    items: list[Dataset] = [_text(codes.METHOD, method)]
    for name, value in values.items():
        if value is not None and math.isfinite(float(value)):
            items.append(_num(codes.metric_code(name), float(value)))
    mass = values.get("brain_mass")
    if mass is not None and math.isfinite(float(mass)):
        outside = float(mass) < OUTSIDE_BRAIN_THRESHOLD
        items.append(_code(codes.OUTSIDE_BRAIN, codes.YES if outside else codes.NO))
    return _container(codes.EXPLANATION, items)


def _series_item(
    series: Series, decision: SeriesDecision, metrics: Mapping[str, Mapping[str, float]]
) -> hd.sr.ContainerContentItem:
    items: list[Dataset] = [
        hd.sr.UIDRefContentItem(
            name=codes.SERIES_INSTANCE_UID,
            value=series.series_instance_uid,
            relationship_type=Rel.CONTAINS,
        ),
        _text(codes.SERIES_DESCRIPTION, _description(series)),
        _code(codes.FINDING, codes.class_code(decision.label)),
        _text(codes.REASON, decision.reason),
        *_probabilities(decision.probabilities),
        _num(codes.N_SLICES, len(series)),
        _num(codes.N_ELIGIBLE, len(decision.eligible_indices)),
    ]
    for idx in decision.eligible_indices:
        sl = series.slices[idx]
        items.append(
            hd.sr.ImageContentItem(
                name=codes.SOURCE_OF_MEASUREMENT,
                referenced_sop_class_uid=sl.sop_class_uid,
                referenced_sop_instance_uid=sl.sop_instance_uid,
                referenced_frame_numbers=sl.frame_number,
                relationship_type=Rel.CONTAINS,
            )
        )
    for method, values in metrics.items():
        items.append(_quality(method, values))
    return _container(codes.SERIES_RESULT, items)


def _description(series: Series) -> str:
    text = series.series_description
    return text if text and valid_text(text) else "-"


def _skipped_item(skipped: SkippedSeries) -> hd.sr.ContainerContentItem:
    uid = hd.sr.UIDRefContentItem(
        name=codes.SERIES_INSTANCE_UID,
        value=skipped.series_instance_uid,
        relationship_type=Rel.CONTAINS,
    )
    return _container(codes.SERIES_SKIPPED, [uid, _text(codes.REASON, skipped.reason)])


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
) -> Dataset:
    """A Comprehensive SR of one study's result; decisions[i] belongs to series_list[i].

    Invalid source values found on the way are added to ``source_warnings`` (once each).
    """
    if not series_list or len(series_list) != len(decisions):
        raise InputError(f"{len(series_list)} series but {len(decisions)} decisions")
    studies = {s.study_instance_uid for s in series_list}
    if len(studies) != 1:
        raise InputError(f"series from {len(studies)} studies in one report")
    study_uid = studies.pop()
    study = _container(
        codes.STUDY_RESULT,
        [
            _code(codes.FINDING, codes.class_code(study_label)),
            _text(codes.REASON, study_reason),
            *_probabilities(study_probs),
        ],
    )
    root = _root(series_list, decisions, study, metrics, ctx, skipped)
    evidence = _evidence(series_list, decisions)
    texts = [study_reason, *(_description(s) for s in series_list), *(k.reason for k in skipped)]
    src = sanitise_source(evidence[0], texts + [d.reason for d in decisions])
    record(src.warnings, source_warnings, "SR")
    with quiet_person_names():
        sr = hd.sr.ComprehensiveSR(
            evidence=[src.dataset, *evidence[1:]],
            content=root,
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
    log.info("built SR for study %s with %d series", study_uid, len(series_list))
    return sr


def _root(
    series_list: Sequence[Series],
    decisions: Sequence[SeriesDecision],
    study: hd.sr.ContainerContentItem,
    metrics: Metrics,
    ctx: ResultContext,
    skipped: Sequence[SkippedSeries],
) -> hd.sr.ContainerContentItem:
    """The report's root container: statement, algorithm, study, series and skipped series."""
    items: list[Dataset] = [
        _text(codes.COMMENT, ctx.statement),
        _text(codes.ALGORITHM_NAME, ctx.algorithm_name),
        _text(codes.ALGORITHM_VERSION, ctx.model_version),
        _text(codes.MODEL_NAME, ctx.model_name),
        study,
    ]
    for s, d in zip(series_list, decisions, strict=True):
        items.append(_series_item(s, d, metrics.get(s.series_instance_uid, {})))
    items.extend(_skipped_item(s) for s in skipped)
    return _container(codes.REPORT_TITLE, items, root=True)


def _evidence(series_list: Sequence[Series], decisions: Sequence[SeriesDecision]) -> list[Dataset]:
    """Headers of every referenced instance (CurrentRequestedProcedureEvidenceSequence)."""
    seen: dict[str, Dataset] = {}
    for s, d in zip(series_list, decisions, strict=True):
        indices = d.eligible_indices or [0]
        for idx in indices:
            sl = s.slices[idx]
            seen.setdefault(sl.sop_instance_uid, sl.dataset)
    return list(seen.values())
