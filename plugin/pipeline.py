"""The analysis pipeline: DICOM in, classification + explanations, DICOM results out.

read -> select series -> preprocess every slice (the training preprocessing) -> classify ->
decide eligible slices and the series/study class (inference.aggregation) -> explain ->
write SC overlays, Parametric Maps and a Structured Report into the source study.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dicom_io.context import ResultContext
from dicom_io.files import write_datasets
from dicom_io.parametric_map import MapOptions, build_parametric_map
from dicom_io.reader import ReadResult, read_paths
from dicom_io.secondary_capture import build_overlays
from dicom_io.sequence import T2_LIKE, sequence_of
from dicom_io.series import Series
from dicom_io.series_selection import SelectionRules, load_rules, select_series
from dicom_io.structured_report import SkippedSeries, build_report
from explain.attribution import Attribution
from explain.quality import QualityMetrics, QualityOptions, quality_metrics
from explain.rendering import overlay
from inference.aggregation import (
    AggregationOptions,
    SeriesDecision,
    SliceEvidence,
    decide_series,
    decide_study,
    unsupported_sequence,
)
from inference.bundle import Classifier, Prediction
from inference.errors import BrainxaiError
from inference.preprocessing import Preprocessed, preprocess
from plugin.explained_prediction import predict_and_explain

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
METHOD_LABELS = {
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "saliency": "Saliency",
    "smoothgrad": "SmoothGrad",
    "occlusion": "Occlusion",
}


@dataclass(frozen=True)
class PipelineOptions:
    methods: tuple[str, ...] = ("gradcam", "saliency")
    aggregation: AggregationOptions = field(default_factory=AggregationOptions)
    rules_path: Path | None = None
    quality_slices: int = 2  # deletion/insertion curves on the N most confident slices
    quality_steps: int = 4
    float_maps: bool = False


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


@dataclass
class StudyAnalysis:
    study_instance_uid: str
    series: list[SeriesAnalysis]
    label: str = "indeterminate"
    reason: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def analyze_series(
    series: Series, clf: Classifier, rules: SelectionRules, opts: PipelineOptions
) -> SeriesAnalysis:
    """Select, classify and explain one series (no writing)."""
    sel = select_series(series, rules)
    result = SeriesAnalysis(series, sel.selected, sel.reason, sel.plane, sequence_of(series))
    if not sel.selected:
        return result
    cfg = clf.meta.preprocess
    result.prepared = [preprocess(s.pixels, cfg) for s in series.slices]
    images = np.stack([p.image for p in result.prepared])
    pred, attributions = predict_and_explain(clf, images, opts.methods)
    result.prediction = pred
    decision = decide_series(slice_evidence(series, result.prepared, pred, clf), opts.aggregation)
    if result.sequence in T2_LIKE:
        decision = unsupported_sequence(decision, result.sequence)
    result.decision = decision
    result.maps = {m: a.normalised for m, a in attributions.items()}
    result.quality = _quality(clf, images, result, attributions, opts)
    return result


def slice_evidence(
    series: Series, prepared: Sequence[Preprocessed], pred: Prediction, clf: Classifier
) -> SliceEvidence:
    area = np.array(
        [
            p.head_fraction * s.rows * s.columns
            for p, s in zip(prepared, series.slices, strict=True)
        ],
        np.float32,
    )
    threshold = clf.ood.threshold if clf.ood is not None else float("inf")
    return SliceEvidence(
        probs=pred.probs,
        head_area=area,
        # The reader sorts slices along the normal, inferior (or right/anterior) first.
        position=np.arange(len(series.slices), dtype=np.float32),
        ood_score=pred.ood_score,
        ood_threshold=threshold,
        plane=series.plane,
    )


def _quality(
    clf: Classifier,
    images: NDArray[np.float32],
    result: SeriesAnalysis,
    attributions: dict[str, Attribution],
    opts: PipelineOptions,
) -> dict[str, dict[str, float]]:
    """Explanation-quality figures per method over the most confident eligible slices."""
    decision = result.decision
    pred = result.prediction
    if decision is None or pred is None:
        return {}
    eligible = decision.eligible_indices
    if not eligible:
        return {}
    conf = pred.probs[eligible].max(axis=1)
    chosen = [eligible[i] for i in np.argsort(-conf)[: opts.quality_slices]]
    masks = np.stack([result.prepared[i].head_mask for i in chosen])
    subset = {
        m: Attribution(a.method, a.raw[chosen], a.normalised[chosen], a.targets[chosen])
        for m, a in attributions.items()
    }
    qopts = QualityOptions(steps=opts.quality_steps, temperature=clf.meta.temperature)
    metrics = quality_metrics(clf.net, images[chosen], subset, masks, qopts)
    return {m: _mean_metrics(rows) for m, rows in metrics.items()}


def _mean_metrics(rows: Sequence[QualityMetrics]) -> dict[str, float]:
    keys = (
        "brain_mass",
        "deletion_auc",
        "insertion_auc",
        "deletion_auc_random",
        "insertion_auc_random",
    )
    out = {k: float(np.mean([getattr(r, k) for r in rows])) for k in keys}
    out["n_slices"] = float(len(rows))
    out["outside_brain"] = float(out["brain_mass"] < 0.5)
    return out


def _display(pixels: NDArray[np.float32]) -> NDArray[np.float32]:
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    out: NDArray[np.float32] = np.clip((pixels - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    return out.astype(np.float32)


def _caption(clf: Classifier, result: SeriesAnalysis, index: int) -> str:
    assert result.prediction is not None and result.decision is not None
    probs = result.prediction.probs[index]
    k = int(probs.argmax())
    return f"slice: {clf.meta.classes[k]} {probs[k]:.2f} | series: {result.decision.label}"


def write_series(
    result: SeriesAnalysis,
    clf: Classifier,
    ctx: ResultContext,
    out_dir: Path,
    opts: PipelineOptions,
) -> list[Path]:
    """SC overlays of the eligible slices and one Parametric Map per method."""
    if result.decision is None or not result.maps:
        return []
    series = result.series
    folder = out_dir / series.study_instance_uid / series.series_instance_uid
    eligible = result.decision.eligible_indices
    first = opts.methods[0]
    heat_src = [
        result.prepared[i].to_source(result.maps[first][i]) if i in eligible else None
        for i in range(len(series.slices))
    ]
    rgbs = [overlay(_display(series.slices[i].pixels), heat_src[i]) for i in eligible]  # type: ignore[arg-type]
    captions = [_caption(clf, result, i) for i in eligible]
    label = METHOD_LABELS.get(first, first)
    datasets = (
        build_overlays(series, eligible, rgbs, ctx, captions, heatmap_label=label)
        if eligible
        else []
    )
    paths = write_datasets(datasets, folder)
    for method in opts.methods:
        maps = np.zeros(
            (len(series.slices), series.slices[0].rows, series.slices[0].columns), np.float32
        )
        for i in eligible:
            maps[i] = np.clip(result.prepared[i].to_source(result.maps[method][i]), 0.0, 1.0)
        mopts = MapOptions(
            method=method,
            method_label=METHOD_LABELS.get(method, method),
            float_pixels=opts.float_maps,
        )
        pm = build_parametric_map(series, maps, ctx, mopts)
        paths += write_datasets([pm], folder)
    return paths


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
    d, pred = result.decision, result.prediction
    if d is None or pred is None:
        return out
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
        }
        for sd in d.slices
    ]
    out["explanation"] = result.quality
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
        if progress:
            progress(series.series_instance_uid)
        try:
            result = analyze_series(series, clf, rules, opts)
        except (BrainxaiError, ValueError, RuntimeError) as exc:
            # A series we cannot analyse is recorded with the reason; the study goes on.
            log.warning("series %s: analysis failed: %s", series.series_instance_uid, exc)
            result = SeriesAnalysis(series, False, f"analysis failed: {exc}")
        study.series.append(result)
    t1 = time.perf_counter()
    for result in study.series:
        try:
            result.outputs = write_series(result, clf, ctx, out_dir, opts)
        except (BrainxaiError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # One bad series must not lose the study: record why and go on.
            log.warning(
                "series %s: writing results failed: %s", result.series.series_instance_uid, exc
            )
            result.error = f"results not written: {exc}"
        study.outputs += result.outputs
    decided = [r for r in study.series if r.decision is not None]
    usable = [r.decision for r in decided if r.sequence not in T2_LIKE]
    study.label, study.reason, study.probabilities = decide_study(usable)  # type: ignore[arg-type]
    if decided:
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
        )
        study.outputs += write_datasets([sr], out_dir / study_uid)
    study.timings = {"analyze_s": round(t1 - t0, 3), "write_s": round(time.perf_counter() - t1, 3)}
    log.info("study %s: %s (%s)", study_uid, study.label, study.reason)
    return study


def study_summary(study: StudyAnalysis, clf: Classifier) -> dict[str, Any]:
    return {
        "study_instance_uid": study.study_instance_uid,
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
    }


def analyze_paths(
    paths: Sequence[Path],
    clf: Classifier,
    out_dir: Path,
    opts: PipelineOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Read DICOM files/folders, analyse every study, return the JSON-ready summary."""
    o = opts or PipelineOptions()
    read: ReadResult = read_paths(list(paths))
    by_study: dict[str, list[Series]] = {}
    for s in read.series:
        by_study.setdefault(s.study_instance_uid, []).append(s)
    studies = [
        study_summary(analyze_study(series, clf, out_dir, o, progress), clf)
        for series in by_study.values()
    ]
    return {
        "studies": studies,
        "rejected": [{"path": r.path, "reason": r.reason} for r in read.rejected],
    }
