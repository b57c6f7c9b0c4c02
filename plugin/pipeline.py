"""The analysis pipeline: DICOM in, classification + explanations, DICOM results out.

read -> select series -> preprocess, classify and explain every slice (plugin.analysis) ->
decide eligible slices and the series/study class (inference.aggregation) -> quality figures
and overlays (plugin.analysis) -> write SC overlays, Parametric Maps and a Structured Report
into the source study.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dicom_io.context import ResultContext
from dicom_io.files import write_datasets
from dicom_io.finding_region import deciding_index
from dicom_io.parametric_map import MapOptions, build_parametric_map
from dicom_io.reader import ReadResult, read_paths
from dicom_io.sanitise import BUILD_ERRORS, failure_reason
from dicom_io.secondary_capture import build_overlays
from dicom_io.sequence import T2_LIKE, sequence_of
from dicom_io.series import Series
from dicom_io.series_selection import SelectionRules, load_rules, select_series
from dicom_io.structured_report import Attention, ResultObject, SkippedSeries, build_report
from explain.attribution import Attribution
from explain.options import DEFAULT_METHODS, parse_methods
from explain.quality import QualityMetrics, brain_mass
from inference.aggregation import (
    AggregationOptions,
    SliceEvidence,
    decide_series,
    decide_study,
    unsupported_sequence,
)
from inference.bundle import Classifier, Prediction
from inference.preprocessing import Preprocessed, View
from plugin.analysis import (
    METHOD_LABELS,
    classify_and_explain,
    classify_and_explain_in_parts,
    display_image,
    measure_quality,
    prepare,
    quality_options,
    render_overlay,
    result_text,
    stack,
)
from plugin.series_evidence import GATE_METHODS, cam_evidence, slice_evidence, with_gate_map
from plugin.settings import Settings
from vocabulary.decisions import SeriesDecision
from vocabulary.errors import BrainxaiError
from vocabulary.explanation_checks import BRAIN_MASS_MIN
from vocabulary.sentence import series_sentence, slice_output_text, study_sentence

log = logging.getLogger(__name__)

#: called with a series and how many of its slices are done: after each part of
#: PROGRESS_PART slices, and with all of them when the series is done (or skipped)
Progress = Callable[[Series, int], None]
PROGRESS_PART = 16


@dataclass(frozen=True)
class PipelineOptions:
    methods: tuple[str, ...] = DEFAULT_METHODS
    aggregation: AggregationOptions = field(default_factory=AggregationOptions)
    rules_path: Path | None = None
    # Deletion/insertion/ROAD curves on the N most confident slices; 0: the brain mass of
    # the most confident slice only. Each curve slice costs about 1.45 s here (30 curve
    # images and the ROAD imputation; 24-slice PGBM-001, idle machine) against about 1.35 s
    # for the whole analysis without curves, so they are off unless asked for
    # (Settings.quality_slices, analyze --quality-slices).
    quality_slices: int = 0
    quality_steps: int = 4
    float_maps: bool = True  # OHIF fuses float maps; integer ones for Orthanc's Web Viewer
    map_palette: str | None = None  # colour presentation of the maps (parametric_map.PALETTES)


def pipeline_options(settings: Settings, **overrides: Any) -> PipelineOptions:
    """The options the settings give (methods, selection rules, quality slices, map kind and
    palette), with ``overrides`` (e.g. a command's flags) on top; None values are ignored."""
    fields: dict[str, Any] = {
        "methods": parse_methods(list(settings.methods)),
        "rules_path": settings.selection_rules,
        "quality_slices": settings.quality_slices,
        "float_maps": settings.float_maps,
        "map_palette": settings.map_palette,
    }
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return PipelineOptions(**fields)


@dataclass
class SeriesAnalysis:
    series: Series
    selected: bool
    reason: str
    plane: str = ""
    sequence: str = "unknown"
    decision: SeriesDecision | None = None
    prediction: Prediction | None = None
    prepared: list[Preprocessed] = field(default_factory=list)
    maps: dict[str, NDArray[np.float32]] = field(default_factory=dict)  # method -> (N, S, S)
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None
    evidence: SliceEvidence | None = None
    objects: list[ResultObject] = field(default_factory=list)  # SC and PM written, for the SR


@dataclass
class StudyAnalysis:
    study_instance_uid: str
    series: list[SeriesAnalysis]
    label: str = "indeterminate"
    reason: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # invalid source values (keyword, rule)
    errors: list[str] = field(default_factory=list)  # result objects not written, and why


def analyze_series(
    series: Series,
    clf: Classifier,
    rules: SelectionRules,
    opts: PipelineOptions,
    progress: Progress | None = None,
) -> SeriesAnalysis:
    """Select, classify and explain one series (no writing)."""
    sel = select_series(series, rules)
    result = SeriesAnalysis(series, sel.selected, sel.reason, sel.plane, sequence_of(series))
    if not sel.selected:
        return result
    turns = View(*series.upright_turns)
    result.prepared = prepare(clf, [s.pixels for s in series.slices], turns)
    images = stack(result.prepared)
    methods = with_gate_map(opts.methods)
    if progress is None:
        pred, attributions = classify_and_explain(clf, images, methods)
    else:
        done = partial(progress, series)
        pred, attributions = classify_and_explain_in_parts(
            clf, images, methods, PROGRESS_PART, done
        )
    result.prediction = pred
    cam = next((attributions[m] for m in GATE_METHODS if m in attributions), None)
    evidence = slice_evidence(series, result.prepared, pred, clf)
    if cam is not None:
        inside, centroid = cam_evidence(cam.normalised, result.prepared)
        evidence = replace(evidence, cam_inside=inside, cam_centroid=centroid)
    result.evidence = evidence
    decision = decide_series(evidence, opts.aggregation)
    if result.sequence in T2_LIKE:
        decision = unsupported_sequence(decision, result.sequence)
    result.decision = decision
    shown = {m: attributions[m] for m in opts.methods}  # not the gate's own Grad-CAM
    result.maps = {m: a.normalised for m, a in shown.items()}
    result.quality = _quality(clf, images, result, shown, opts)
    return result


def _quality(
    clf: Classifier,
    images: NDArray[np.float32],
    result: SeriesAnalysis,
    attributions: dict[str, Attribution],
    opts: PipelineOptions,
) -> dict[str, dict[str, float]]:
    """Explanation-quality figures per method over the most confident eligible slices:
    the curves on ``opts.quality_slices`` of them, or, with 0, the brain mass of one."""
    decision = result.decision
    pred = result.prediction
    if decision is None or pred is None:
        return {}
    eligible = decision.eligible_indices
    if not eligible:
        return {}
    conf = pred.probs[eligible].max(axis=1)
    chosen = [eligible[i] for i in np.argsort(-conf)[: max(1, opts.quality_slices)]]
    masks = np.stack([result.prepared[i].head_mask for i in chosen])
    if opts.quality_slices < 1:
        return {m: _brain_mass_only(a.raw[chosen], masks) for m, a in attributions.items()}
    subset = {
        m: Attribution(a.method, a.raw[chosen], a.normalised[chosen], a.targets[chosen])
        for m, a in attributions.items()
    }
    qopts = quality_options(clf, opts.quality_steps)
    metrics = measure_quality(clf, images[chosen], subset, masks, qopts)
    return {m: _mean_metrics(rows) for m, rows in metrics.items()}


def _brain_mass_only(maps: NDArray[Any], masks: NDArray[np.bool_]) -> dict[str, float]:
    """The figures without curves: brain mass (mean over the slices) and what follows."""
    mass = float(np.mean([brain_mass(m, k) for m, k in zip(maps, masks, strict=True)]))
    outside = float(mass < BRAIN_MASS_MIN)
    return {"brain_mass": mass, "n_slices": float(len(maps)), "outside_brain": outside}


def _mean_metrics(rows: Sequence[QualityMetrics]) -> dict[str, float]:
    keys = (
        "brain_mass",
        "deletion_auc",
        "insertion_auc",
        "deletion_auc_random",
        "insertion_auc_random",
        "road_deletion_auc",
        "road_deletion_auc_random",
    )
    out = {k: float(np.mean([getattr(r, k) for r in rows])) for k in keys}
    out["n_slices"] = float(len(rows))
    out["outside_brain"] = float(out["brain_mass"] < BRAIN_MASS_MIN)
    return out


def _caption(clf: Classifier, result: SeriesAnalysis, index: int) -> list[str]:
    """The series decision sentence, then this slice's own (labelled) model output."""
    assert result.prediction is not None and result.decision is not None
    probs = result.prediction.probs[index]
    k = int(probs.argmax())
    return [
        series_sentence(result.decision),
        slice_output_text(clf.meta.classes[k], float(probs[k])),
    ]


def write_series(
    result: SeriesAnalysis,
    clf: Classifier,
    ctx: ResultContext,
    out_dir: Path,
    opts: PipelineOptions,
    study: StudyAnalysis | None = None,
) -> list[Path]:
    """SC overlays of the eligible slices and one Parametric Map per method.

    Each object kind is built and written on its own: one that fails is logged and recorded
    (``result.error`` and ``study.errors``) while the others are still written. Invalid source
    values the writers dropped or emptied are recorded in ``study.warnings``.
    """
    decision = result.decision
    if decision is None or not result.maps:
        return []
    series = result.series
    folder = out_dir / series.study_instance_uid / series.series_instance_uid
    warnings = study.warnings if study is not None else None
    of_series = f"of series {series.series_instance_uid}"
    failures: list[str] = []
    paths: list[Path] = []
    if decision.eligible_indices:
        build = partial(_overlays, result, clf, ctx, opts, warnings)
        keep = partial(_keep_objects, result, opts.methods[0])
        paths += write_object(build, folder, f"SC {of_series}", failures, keep)
    for method in opts.methods:
        build = partial(_parametric_map, result, ctx, opts, method, warnings)
        keep = partial(_keep_objects, result, method)
        paths += write_object(build, folder, f"PM {method} {of_series}", failures, keep)
    if failures:
        result.error = "; ".join(failures)
        if study is not None:
            study.errors += failures
    return paths


def _keep_objects(result: SeriesAnalysis, method: str, datasets: Sequence[Any]) -> None:
    """Remember the SC/PM instances written (the SR references them)."""
    result.objects += [ResultObject.of(ds, method) for ds in datasets]


def _overlays(
    result: SeriesAnalysis,
    clf: Classifier,
    ctx: ResultContext,
    opts: PipelineOptions,
    warnings: list[str] | None,
) -> list[Any]:
    assert result.decision is not None
    series = result.series
    eligible = result.decision.eligible_indices
    first = opts.methods[0]
    rgbs = [
        render_overlay(
            display_image(series.slices[i].pixels),
            result.prepared[i],
            result.maps[first][i],
            text=result_text(ctx.model_name, ctx.model_version, _caption(clf, result, i)),
        )
        for i in eligible
    ]
    label = METHOD_LABELS.get(first, first)
    return build_overlays(
        series, eligible, rgbs, ctx, heatmap_label=label, source_warnings=warnings
    )


def _parametric_map(
    result: SeriesAnalysis,
    ctx: ResultContext,
    opts: PipelineOptions,
    method: str,
    warnings: list[str] | None,
) -> list[Any]:
    assert result.decision is not None
    series = result.series
    first = series.slices[0]
    maps = np.zeros((len(series.slices), first.rows, first.columns), np.float32)
    for i in result.decision.eligible_indices:
        maps[i] = np.clip(result.prepared[i].to_source(result.maps[method][i]), 0.0, 1.0)
    mopts = MapOptions(
        method=method,
        method_label=METHOD_LABELS.get(method, method),
        float_pixels=opts.float_maps,
        palette=opts.map_palette,
    )
    return [build_parametric_map(series, maps, ctx, mopts, source_warnings=warnings)]


def write_object(
    build: Callable[[], Sequence[Any]],
    folder: Path,
    what: str,
    failures: list[str],
    on_written: Callable[[Sequence[Any]], None] | None = None,
) -> list[Path]:
    """Build and write one kind of result object; a failure is added to ``failures``.

    ``on_written`` receives the datasets once they are written (e.g. to reference them).

    The reason recorded is one line without values or paths (dicom_io.sanitise.failure_reason):
    library messages quote the source values that broke them, which may identify the patient.
    """
    try:
        datasets = build()
        paths = write_datasets(datasets, folder)
        if on_written is not None:
            on_written(datasets)
        return paths
    except BUILD_ERRORS as exc:
        reason = failure_reason(exc)
    except Exception as exc:  # noqa: BLE001 - per-object boundary: the other objects go on
        reason = f"unexpected {failure_reason(exc)}"
    log.warning("%s not written: %s", what, reason)
    failures.append(f"{what} not written: {reason}")
    return []


def _probs_dict(clf: Classifier, row: NDArray[np.float32]) -> dict[str, float]:
    return {c: round(float(v), 4) for c, v in zip(clf.meta.classes, row, strict=True)}


def series_summary(result: SeriesAnalysis, clf: Classifier) -> dict[str, Any]:
    """The JSON summary of one series (what summary.json and the job store hold)."""
    s = result.series
    out: dict[str, Any] = {
        "series_instance_uid": s.series_instance_uid,
        "series_description": s.series_description,
        "n_slices": len(s.slices),
        "plane": result.plane,
        "sequence": result.sequence,
        "selected": result.selected,
        "reason": result.error or result.reason,
        "outputs": [str(p) for p in result.outputs],
    }
    if s.notes:  # what the reader found unsound and how it coped (dicom_io.reader)
        out["notes"] = list(s.notes)
    d, pred = result.decision, result.prediction
    if d is None or pred is None:
        return out
    out["sentence"] = series_sentence(d)
    out["prediction"] = {
        "class": d.label,
        "reason": d.reason,
        "probabilities": {k: round(v, 4) for k, v in d.probabilities.items()},
        "votes": d.votes,
    }
    out["slices"] = [
        {
            "index": sd.index,
            "sop_instance_uid": s.slices[sd.index].sop_instance_uid,
            "eligible": sd.eligible,
            "reason": sd.reason,
            "pred": sd.predicted,
            "probabilities": _probs_dict(clf, pred.probs[sd.index]),
            "ood_score": round(float(pred.ood_score[sd.index]), 2),
            **_slice_gates(result.evidence, sd.index),
        }
        for sd in d.slices
    ]
    out["explanation"] = result.quality
    return out


def _slice_gates(ev: SliceEvidence | None, i: int) -> dict[str, Any]:
    """Per-slice scope and Grad-CAM figures for the summary (those that were computed)."""
    out: dict[str, Any] = {}
    if ev is None:
        return out
    if ev.in_scope is not None:
        out["in_scope"] = round(float(ev.in_scope[i]), 3)
    if ev.cam_inside is not None:
        out["cam_inside_brain"] = round(float(ev.cam_inside[i]), 3)
    if ev.cam_centroid is not None:
        out["cam_centroid"] = [round(float(v), 3) for v in ev.cam_centroid[i]]
    return out


def analyze_study(
    series_list: Sequence[Series],
    clf: Classifier,
    out_dir: Path,
    opts: PipelineOptions,
    progress: Progress | None = None,
) -> StudyAnalysis:
    """Analyse every series of one study and write its result objects under out_dir."""

    study_uid = series_list[0].study_instance_uid
    rules = load_rules(opts.rules_path)
    ctx = ResultContext(model_name=clf.meta.name, model_version=clf.version)
    study = StudyAnalysis(study_uid, [])
    t0 = time.perf_counter()
    for series in series_list:
        try:
            result = analyze_series(series, clf, rules, opts, progress)
        except (BrainxaiError, ValueError, RuntimeError) as exc:
            # A series we cannot analyse is recorded with the reason; the study goes on.
            reason = failure_reason(exc)  # one line, no source values or paths
            log.warning("series %s: analysis failed: %s", series.series_instance_uid, reason)
            result = SeriesAnalysis(series, False, f"analysis failed: {reason}")
        study.series.append(result)
        if progress:
            progress(series, len(series))
    t1 = time.perf_counter()
    for result in study.series:
        # Each object kind is written on its own: a failure is recorded, the rest go out.
        result.outputs = write_series(result, clf, ctx, out_dir, opts, study)
        study.outputs += result.outputs
    decided = [r for r in study.series if r.decision is not None]
    usable = [r.decision for r in decided if r.sequence not in T2_LIKE]
    study.label, study.reason, study.probabilities = decide_study(usable)  # type: ignore[arg-type]
    if decided:
        build = partial(_report, study, decided, ctx)
        study.outputs += write_object(build, out_dir / study_uid, "SR", study.errors)
    study.timings = {"analyze_s": round(t1 - t0, 3), "write_s": round(time.perf_counter() - t1, 3)}
    log.info("study %s: %s (%s)", study_uid, study.label, study.reason)
    return study


def _report(
    study: StudyAnalysis, decided: Sequence[SeriesAnalysis], ctx: ResultContext
) -> list[Any]:
    """The study's SR over its decided series, listing the series not analysed."""
    skipped = [
        SkippedSeries(r.series.series_instance_uid, r.reason)
        for r in study.series
        if r.decision is None
    ]
    metrics = {r.series.series_instance_uid: r.quality for r in decided}
    sr = build_report(
        [r.series for r in decided],
        [r.decision for r in decided],  # type: ignore[misc]
        study.label,
        study.reason,
        study.probabilities,
        metrics,
        ctx,
        skipped,
        source_warnings=study.warnings,
        results={r.series.series_instance_uid: r.objects for r in decided},
        attention=_attention(decided),
    )
    return [sr]


def _attention(decided: Sequence[SeriesAnalysis]) -> Attention:
    """Each method's map on each series' deciding slice, on that slice's pixel grid (the
    SR outlines its top region); none for a series whose deciding slice was not explained."""
    out: dict[str, dict[str, NDArray[np.float32]]] = {}
    for r in decided:
        assert r.decision is not None
        k = deciding_index(r.series, r.decision)
        if k not in r.decision.eligible_indices:
            continue
        out[r.series.series_instance_uid] = {
            m: np.clip(r.prepared[k].to_source(maps[k]), 0.0, 1.0).astype(np.float32)
            for m, maps in r.maps.items()
        }
    return out


def study_summary(study: StudyAnalysis, clf: Classifier) -> dict[str, Any]:
    return {
        "study_instance_uid": study.study_instance_uid,
        "sentence": study_sentence(study.label, study.reason),
        "prediction": {
            "class": study.label,
            "reason": study.reason,
            "probabilities": {k: round(v, 4) for k, v in study.probabilities.items()},
        },
        "model": {"name": clf.meta.name, "version": clf.version},
        "disclaimer": "RESEARCH USE ONLY - NOT FOR DIAGNOSIS",
        "series": [series_summary(r, clf) for r in study.series],
        "outputs": [str(p) for p in study.outputs],
        "timings": study.timings,
        "warnings": list(study.warnings),
        "errors": list(study.errors),
    }


def failed_study_summary(study_uid: str, reason: str, clf: Classifier) -> dict[str, Any]:
    """The summary of a study whose analysis failed: class "error" and the one-line reason."""
    return {
        "study_instance_uid": study_uid,
        "error": reason,
        "sentence": study_sentence("error", f"analysis failed: {reason}"),
        "prediction": {"class": "error", "reason": f"analysis failed: {reason}"},
        "model": {"name": clf.meta.name, "version": clf.version},
        "disclaimer": "RESEARCH USE ONLY - NOT FOR DIAGNOSIS",
        "series": [],
        "outputs": [],
        "timings": {},
        "warnings": [],
        "errors": [reason],
    }


def _study_or_error(
    series_list: Sequence[Series],
    clf: Classifier,
    out_dir: Path,
    opts: PipelineOptions,
    progress: Progress | None,
) -> dict[str, Any]:
    """One study's summary; a study that fails is recorded with the reason, never raised."""
    study_uid = series_list[0].study_instance_uid
    try:
        return study_summary(analyze_study(series_list, clf, out_dir, opts, progress), clf)
    except BUILD_ERRORS as exc:
        reason = failure_reason(exc)
    except Exception as exc:  # noqa: BLE001 - per-study boundary: the other studies go on
        reason = f"unexpected {failure_reason(exc)}"
    log.error("study %s failed: %s", study_uid, reason)
    return failed_study_summary(study_uid, reason, clf)


def analyze_paths(
    paths: Sequence[Path],
    clf: Classifier,
    out_dir: Path,
    opts: PipelineOptions | None = None,
    progress: Progress | None = None,
    isolate_studies: bool = False,
    on_read: Callable[[Sequence[Series]], None] | None = None,
) -> dict[str, Any]:
    """Read DICOM files/folders, analyse every study, return the JSON-ready summary.

    With ``isolate_studies`` (``brainxai analyze``) a study that fails is in the summary with
    its one-line ``error`` and the others go on; without it (the service: one job, one study)
    the failure is raised, so the job fails with it. ``on_read`` is given every series read
    before the first is analysed (``progress`` then follows each one: a progress bar's total).
    """
    o = opts or PipelineOptions()
    read: ReadResult = read_paths(list(paths))
    by_study: dict[str, list[Series]] = {}
    for s in read.series:
        by_study.setdefault(s.study_instance_uid, []).append(s)
    if on_read:
        on_read(read.series)
    studies = [
        _study_or_error(series, clf, out_dir, o, progress)
        if isolate_studies
        else study_summary(analyze_study(series, clf, out_dir, o, progress), clf)
        for series in by_study.values()
    ]
    return {
        "studies": studies,
        "rejected": [{"path": r.path, "reason": r.reason} for r in read.rejected],
    }
