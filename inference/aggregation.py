"""From slice probabilities to a series and study class, with honest abstention.

The rule (stated in the README, calibrated on the shared DICOM series and validation):

1. A slice is *eligible* only if it holds signal (its intensity range is at least
   ``min_signal`` of the series' median: a noise-only end slice of a 3D acquisition has a
   head mask that fills the image and would otherwise set the series' largest head area),
   enough head is in it (head area >= ``min_head_fraction``
   of the series' largest head area), it lies in the central part of the head along the
   slice axis (axial: not the skull base / sella level or vertex; sagittal and coronal: not
   the outer slices), and its feature-distance OOD score is below the model's threshold x
   ``ood_factor``. Every other slice records why it was not assessed.
2. With fewer than ``min_eligible`` eligible slices the series is ``indeterminate``.
3. A tumour class is reported when at least ``min_votes`` eligible slices (and at least
   ``min_vote_fraction`` of them) call it with probability >= ``confident``, they include a
   run of ``min_run`` adjacent eligible slices, and every other tumour class has at most
   half as many confident votes. On axial series "pituitary" votes never decide and are no
   rival: the eligible slices lie above the sella, where a pituitary tumour cannot be, and
   enough such votes make the series indeterminate; on sagittal and coronal series,
   pituitary votes spread wider than ``pituitary_max_span`` along the slice axis (more
   than a pituitary tumour spans) abstain too. Otherwise, if the confident notumor
   votes are at least ``notumor_fraction`` of the eligible slices (sagittal and coronal:
   ``notumor_fraction_across``), the series is ``notumor``,
   unless enough of the head could not be assessed, the unassessed part holds a confident
   tumour run, or the assessed slices hold ``min_run`` adjacent gated votes of one
   (plausible) tumour class over ``veto_span``: a lesion too small for a tumour class is not
   "no tumour".
4. When the assessed slices of an axial series give no class, slices left out only for
   their position (skull base, vertex) that form a long run (at least ``band_min_slices``
   adjacent slices over ``band_span``) confidently showing one plausible tumour class, in
   distribution, with the Grad-CAM in the brain and at one place, are admitted to the vote;
   the series takes that class only if the vote with them names it. A skull-base meningioma
   of a whole-head 3D series lies below the assessed band; the band's confusions (skull-base
   anatomy called a tumour) were short runs on the studies checked.
5. Anything else is ``indeterminate`` with the reason.

Series probabilities are the mean over eligible slices (reported, not used for the decision).
T2-weighted, FLAIR and diffusion series are classified and explained but abstain
(``unsupported_sequence``): the training data's tumour classes are T1 post-contrast, its
notumor class mixes sequences, so a T2/FLAIR "notumor" would be the sequence talking.
The study takes the remaining series: one tumour class agreed by every decided series wins;
conflicting tumour classes give ``indeterminate``; notumor needs every series notumor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from inference.slice_runs import Run, has_close_neighbour, longest_run, widest_run
from vocabulary.decisions import INDETERMINATE, SeriesDecision, SliceDecision
from vocabulary.identity import CLASSES

NOTUMOR = "notumor"
PITUITARY = "pituitary"


@dataclass(frozen=True)
class AggregationOptions:
    min_signal: float = 0.15
    min_head_fraction: float = 0.5
    # Axial series: share of the head's extent along the slice axis ignored at the bottom
    # (skull base and sella level, which the JPEG-trained model calls "pituitary" even in
    # normal brains) and at the top (vertex).
    exclude_bottom: float = 0.35
    exclude_top: float = 0.15
    # Sagittal and coronal series: share ignored at each end (lateral / frontal, occipital).
    exclude_edges: float = 0.2
    ood_factor: float = 1.0
    min_eligible: int = 3
    confident: float = 0.80
    min_votes: int = 2
    min_vote_fraction: float = 0.2
    min_run: int = 2
    notumor_fraction: float = 0.6
    # Sagittal and coronal series cut across the hemispheres: a lesion on one side leaves the
    # slices of the other side and the midline normal, so a series whose lesion slices the
    # model does not recognise still shows a majority of normal slices (61-65 % measured on
    # a glioma's sagittal series under scanner changes), while a normal head is confidently
    # notumor almost everywhere (81-100 % on the four normal sagittal series and their 32
    # scanner variants). notumor there needs three quarters (a bar on top of
    # ``notumor_fraction``).
    notumor_fraction_across: float = 0.75
    # notumor also needs the assessed slices to be at least this share of the slices that
    # show head: a "no tumour" over a tenth of the head says nothing about the rest (a
    # meningioma at the skull base of a whole-head 3D series sits in the excluded part).
    notumor_coverage: float = 0.2
    # Whether pituitary votes may decide an axial series (see _tumour_decision).
    pituitary_on_axial: bool = False
    # Grad-CAM gate for tumour votes: share of the map's mass inside the brain (the head
    # mask shrunk past the skull), and the largest shift of the map's centroid between
    # adjacent voting slices, as a share of the image side.
    min_cam_inside: float = 0.3
    max_cam_shift: float = 0.25
    # notumor is withheld when the slices left out of the vote (skull base, vertex, head
    # edges, out of scope or distribution) hold a run of at least ``veto_min_slices``
    # adjacent slices, spanning ``veto_span`` (mm, or slices when positions are indices),
    # that confidently (>= ``veto_confident``) show one tumour class with the Grad-CAM in
    # the brain: the part brainxai does not assess may hold a tumour (a skull-base
    # meningioma, a sellar pituitary tumour), so "no tumour" would not be honest.
    veto_min_slices: int = 3
    veto_span: float = 10.0
    veto_confident: float = 0.9
    # A longer such run, left out only for its position (skull base, vertex) and in
    # distribution, is admitted to the vote when the assessed slices decide nothing: at
    # least ``band_min_slices`` adjacent slices over ``band_span`` (a skull-base meningioma of
    # a whole-head 3D series lies below the assessed band). On the real studies checked, the
    # longest run of another cause was 4 slices over 12 mm (skull-base pituitary runs of
    # 3 thick slices reached 19.5 mm: hence both a count and a span).
    band_min_slices: int = 6
    band_span: float = 15.0
    # Planes whose band runs may be admitted: axial only. The sagittal and coronal head
    # edges have no checked tumour case of their own (only a reformat of the same axial
    # meningioma), while a child's sagittal MPRAGE is the kind of normal study the
    # JPEG-trained model once called glioma.
    band_planes: tuple[str, ...] = ("axial",)
    # Pituitary votes spread wider than this along the slice axis (mm, or slices when
    # positions are indices) do not decide: the sella is about 10-15 mm across and a
    # pituitary macroadenoma rarely exceeds 30 mm, while the JPEG-trained pituitary class
    # fires on the enhancing central structures of post-contrast coronal slices (a
    # meningioma the network had not seen: 10 votes over 36 mm called pituitary).
    pituitary_max_span: float = 30.0


@dataclass(frozen=True)
class SliceEvidence:
    """Per-slice inputs to the rule; positions are along the slice normal (mm or index)."""

    probs: NDArray[np.float32]  # (N, C)
    head_area: NDArray[np.float32]  # (N,) head area (any unit, same for all slices)
    position: NDArray[np.float32]  # (N,) position along the normal, increasing superior
    ood_score: NDArray[np.float32]  # (N,)
    ood_threshold: float
    plane: str = "axial"  # axial, sagittal, coronal (decides which ends are excluded)
    # Grad-CAM evidence per slice (None when no CAM was computed): share of the map inside
    # the brain, and the map's centroid (row, column) as a share of the image side.
    cam_inside: NDArray[np.float32] | None = None
    cam_centroid: NDArray[np.float32] | None = None
    # P(in scope) from the model's out-of-scope detector (None without one).
    in_scope: NDArray[np.float32] | None = None
    scope_threshold: float = 0.5
    # Intensity range per slice (inference.preprocessing.Preprocessed.signal; None: all hold
    # signal).
    signal: NDArray[np.float32] | None = None


NO_SIGNAL = "no signal (noise only)"
LITTLE_HEAD = "too little head in slice"
SKULL_BASE = "skull base / sella level (bottom of the head)"
VERTEX = "vertex (top of the head)"
HEAD_EDGE = "edge of the head"


def _silent(ev: SliceEvidence, opts: AggregationOptions) -> NDArray[np.bool_]:
    """Slices holding only noise (intensity range under ``min_signal`` of the median) whose
    head mask found something; a slice without any head mask is simply "too little head"."""
    area = np.asarray(ev.head_area, dtype=np.float64)
    if ev.signal is None or len(area) == 0:
        return np.zeros(len(area), dtype=bool)
    signal = np.asarray(ev.signal, dtype=np.float64)
    return (signal < opts.min_signal * float(np.median(signal))) & (area > 0)


def _head_areas(ev: SliceEvidence, silent: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Head area per slice, zero on silent slices (their masks fill the image)."""
    return np.where(silent, 0.0, np.asarray(ev.head_area, dtype=np.float64))


def slice_eligibility(ev: SliceEvidence, opts: AggregationOptions) -> list[tuple[bool, str]]:
    n = len(ev.probs)
    if n == 0:
        return []
    silent = _silent(ev, opts)
    area = _head_areas(ev, silent)
    max_area = float(area.max())
    head = area >= 0.2 * max_area if max_area > 0 else np.zeros(n, bool)
    pos = np.asarray(ev.position, dtype=np.float64)
    lo, hi = (float(pos[head].min()), float(pos[head].max())) if head.any() else (0.0, 0.0)
    extent = hi - lo
    axial = ev.plane == "axial"
    bottom = opts.exclude_bottom if axial else opts.exclude_edges
    top = opts.exclude_top if axial else opts.exclude_edges
    low_why = SKULL_BASE if axial else HEAD_EDGE
    high_why = VERTEX if axial else HEAD_EDGE
    out: list[tuple[bool, str]] = []
    for i in range(n):
        rel = (pos[i] - lo) / extent if extent > 0 else 0.5
        if silent[i]:
            out.append((False, NO_SIGNAL))
        elif max_area <= 0 or area[i] < opts.min_head_fraction * max_area:
            out.append((False, LITTLE_HEAD))
        elif extent > 0 and rel < bottom:
            out.append((False, low_why))
        elif extent > 0 and rel > 1.0 - top:
            out.append((False, high_why))
        elif ev.ood_score[i] > ev.ood_threshold * opts.ood_factor:
            out.append((False, "out of distribution (feature distance above threshold)"))
        elif ev.in_scope is not None and ev.in_scope[i] < ev.scope_threshold:
            out.append((False, "out of scope (looks like skull base, vertex or head edge)"))
        else:
            out.append((True, "eligible"))
    return out


def decide_series(
    ev: SliceEvidence,
    opts: AggregationOptions | None = None,
    classes: Sequence[str] = CLASSES,
) -> SeriesDecision:
    """Apply the documented rule to one series' slices.

    When the assessed slices give no class, a long band run (``_band_run``) is admitted to
    the vote; its class is reported only if the vote with it names that class.
    """
    o = opts or AggregationOptions()
    flags = slice_eligibility(ev, o)
    first = _decide(ev, flags, o, classes)
    if first.label != INDETERMINATE or len(first.eligible_indices) < o.min_eligible:
        return first
    run = _band_run(ev, flags, o, classes)
    if run is None:
        return first
    where = flags[run.first][1]
    admitted = list(flags)
    for i in run.slices:
        admitted[i] = (True, f"eligible: {where}, in a {run.span:.0f} mm run of {run.label}")
    second = _decide(ev, admitted, o, classes)
    if second.label != run.label:
        return first
    return replace(
        second,
        reason=f"{second.reason}, {run.n} of them adjacent over {run.span:.0f} mm at the "
        f"{where}, admitted as one long run",
    )


def _decide(
    ev: SliceEvidence,
    flags: Sequence[tuple[bool, str]],
    o: AggregationOptions,
    classes: Sequence[str],
) -> SeriesDecision:
    """The rule on given slice eligibility (see the module docstring)."""
    probs = np.asarray(ev.probs, dtype=np.float32)
    decisions = tuple(
        SliceDecision(i, ok, why, classes[int(probs[i].argmax())], float(probs[i].max()))
        for i, (ok, why) in enumerate(flags)
    )
    eligible = [d.index for d in decisions if d.eligible]
    mean = probs[eligible].mean(axis=0) if eligible else np.full(len(classes), np.nan)
    probabilities = {c: float(mean[k]) for k, c in enumerate(classes)}
    if len(eligible) < o.min_eligible:
        return SeriesDecision(
            INDETERMINATE,
            f"only {len(eligible)} eligible slices (need {o.min_eligible})",
            probabilities,
            decisions,
        )
    # Eligible slices in order along the slice axis, to find adjacent runs.
    order = np.argsort(np.asarray(ev.position)[eligible])
    rank = {eligible[j]: r for r, j in enumerate(order)}
    confident = {
        c: [i for i in eligible if probs[i].argmax() == k and probs[i, k] >= o.confident]
        for k, c in enumerate(classes)
    }
    gated, dropped = _cam_gate(ev, confident, o)
    ranked = {c: [rank[i] for i in v] for c, v in gated.items()}
    votes = {c: len(v) for c, v in ranked.items()}
    need = max(o.min_votes, int(np.ceil(o.min_vote_fraction * len(eligible))))
    decided = _tumour_decision(ranked, need, len(eligible), ev.plane, o, classes)
    if decided is not None and decided[0] == PITUITARY:
        decided = _pituitary_extent(ev, gated[PITUITARY], o) or decided
    if decided is not None:
        label, reason = decided
        if dropped and label != INDETERMINATE:
            reason += f"; {dropped} tumour votes dropped (Grad-CAM outside the brain)"
        return SeriesDecision(label, reason, probabilities, decisions, votes)
    tally = _Tally(eligible, gated, votes, need, dropped)
    label, reason = _without_tumour_class(ev, decisions, tally, o, classes)
    return SeriesDecision(label, reason, probabilities, decisions, votes)


@dataclass(frozen=True)
class _Tally:
    """The vote of one series: eligible slice indices, gated confident votes per class (slice
    indices), their counts, the votes a tumour class needs, and votes the gate dropped."""

    eligible: list[int]
    gated: dict[str, list[int]]
    votes: dict[str, int]
    need: int
    dropped: int


def _without_tumour_class(
    ev: SliceEvidence,
    decisions: Sequence[SliceDecision],
    tally: _Tally,
    o: AggregationOptions,
    classes: Sequence[str],
) -> tuple[str, str]:
    """(label, reason) of a series no tumour class decided: notumor, or why not."""
    n, votes = len(tally.eligible), tally.votes
    if tally.dropped >= tally.need:
        return INDETERMINATE, (
            f"{tally.dropped} confident tumour slices whose Grad-CAM lies outside the brain or "
            "jumps between adjacent slices: the model is not looking at a lesion"
        )
    area = _head_areas(ev, _silent(ev, o))
    with_head = int(np.sum(area >= 0.2 * float(area.max())))
    veto = _excluded_tumour_run(ev, decisions, o, classes)
    if n < o.notumor_coverage * with_head:
        reason = (
            f"only {n} of {with_head} slices through the head could be assessed: "
            "too little to rule out a tumour"
        )
        # Where a tumour may be hiding is worth more to the reader than the count alone.
        return INDETERMINATE, reason + (f"; {veto}" if veto is not None else "")
    if veto is not None:
        return INDETERMINATE, veto
    most_tumour = max((v for c, v in votes.items() if c != NOTUMOR), default=0)
    normal = votes.get(NOTUMOR, 0)
    if normal < o.notumor_fraction * n or most_tumour >= tally.need:
        return INDETERMINATE, f"no consistent evidence across {n} eligible slices (votes {votes})"
    if ev.plane != "axial" and normal < o.notumor_fraction_across * n:
        return INDETERMINATE, (
            f"only {normal} of {n} eligible slices confidently notumor; a {ev.plane} "
            f"series needs {o.notumor_fraction_across:.0%}: a lesion on one side leaves the "
            "other side's slices normal"
        )
    run = _assessed_tumour_run(ev, tally.gated, tally.eligible, tally.need, o)
    if run is not None:
        return INDETERMINATE, run
    return NOTUMOR, f"{normal} of {n} eligible slices confidently notumor"


def _assessed_tumour_run(
    ev: SliceEvidence,
    gated: dict[str, list[int]],
    eligible: list[int],
    need: int,
    o: AggregationOptions,
) -> str | None:
    """Why notumor cannot be claimed, if adjacent assessed slices (at least ``min_run``,
    spanning ``veto_span``) hold confident votes of one tumour class that passed the Grad-CAM
    gate, too few to name it.

    Such a run is a small lesion as often as noise; "no tumour" would hide it. The span keeps
    two neighbours 2 mm apart in a thin-slice 3D series (a speck) from counting like two
    5 mm slices (a centimetre). Pituitary votes on an axial series are left out, as in the
    tumour decision (they lie above the sella).
    """
    pos = np.asarray(ev.position, dtype=np.float64)
    implausible = _implausible(ev.plane, o)
    label = {i: c for c, idx in gated.items() if c not in (NOTUMOR, implausible) for i in idx}
    order = sorted(eligible, key=lambda i: pos[i])
    run = widest_run(order, label, pos, o.min_run, o.veto_span)
    if run is None:
        return None
    return (
        f"notumor withheld: {run.n} adjacent assessed slices over {run.span:.0f} mm look "
        f"confidently like {run.label} with Grad-CAM in the brain, fewer than the {need} a "
        "tumour class needs: a lesion there cannot be ruled out"
    )


BAND_REASONS = frozenset({SKULL_BASE, VERTEX, HEAD_EDGE})


def _confident_tumour(
    ev: SliceEvidence, i: int, o: AggregationOptions, classes: Sequence[str]
) -> str | None:
    """Slice ``i``'s tumour class when it is at least ``veto_confident`` and its Grad-CAM (if
    any) lies in the brain; the evidence both left-out run searches read."""
    probs = ev.probs[i]
    k = int(np.argmax(probs))
    if classes[k] == NOTUMOR or float(probs[k]) < o.veto_confident:
        return None
    if ev.cam_inside is not None and float(ev.cam_inside[i]) < o.min_cam_inside:
        return None
    return classes[k]


def _excluded_tumour_run(
    ev: SliceEvidence,
    decisions: Sequence[SliceDecision],
    o: AggregationOptions,
    classes: Sequence[str],
) -> str | None:
    """Why notumor cannot be claimed, if slices left out of the vote show a tumour run."""
    pos = np.asarray(ev.position, dtype=np.float64)
    label: dict[int, str] = {}
    for d in decisions:
        c = _confident_tumour(ev, d.index, o, classes)
        if c is not None and not d.eligible and d.reason not in (LITTLE_HEAD, NO_SIGNAL):
            label[d.index] = c
    order = [int(j) for j in np.argsort(pos)]
    run = widest_run(order, label, pos, o.veto_min_slices, o.veto_span)
    if run is None:
        return None
    return (
        f"notumor withheld: {run.n} adjacent slices over {run.span:.0f} mm that brainxai does "
        f"not assess ({decisions[run.first].reason}) look confidently like {run.label}; a "
        "tumour there cannot be ruled out"
    )


def _band_run(
    ev: SliceEvidence,
    flags: Sequence[tuple[bool, str]],
    o: AggregationOptions,
    classes: Sequence[str],
) -> Run | None:
    """The widest run of slices left out only for their position that confidently show one
    plausible tumour class, in distribution, with the Grad-CAM in the brain and at one place
    across neighbours: at least ``band_min_slices`` slices over ``band_span``. None without
    Grad-CAM evidence (nothing would show the model looks at the brain) and on planes not in
    ``band_planes``."""
    if ev.cam_inside is None or ev.plane not in o.band_planes:
        return None
    pos = np.asarray(ev.position, dtype=np.float64)
    implausible = _implausible(ev.plane, o)
    by_class: dict[str, list[int]] = {}
    for i, (ok, why) in enumerate(flags):
        c = _confident_tumour(ev, i, o, classes)
        if (
            c not in (None, implausible)
            and not ok
            and why in BAND_REASONS
            and ev.ood_score[i] <= ev.ood_threshold * o.ood_factor
        ):
            by_class.setdefault(str(c), []).append(i)
    cent = None if ev.cam_centroid is None else np.asarray(ev.cam_centroid, np.float64)
    label: dict[int, str] = {}
    for c, idx in by_class.items():
        if len(idx) < o.band_min_slices:
            continue
        for i in idx:
            if cent is None or has_close_neighbour(i, idx, pos, cent, o.max_cam_shift):
                label[i] = c
    order = [int(j) for j in np.argsort(pos)]
    return widest_run(order, label, pos, o.band_min_slices, o.band_span)


def _cam_gate(
    ev: SliceEvidence, confident: dict[str, list[int]], o: AggregationOptions
) -> tuple[dict[str, list[int]], int]:
    """Tumour votes whose Grad-CAM lies in the brain and stays put across neighbours.

    The source material found "pixels outside the brain were deemed important" on wrong
    answers; here such votes do not count. A vote is also dropped when its map's centroid
    is farther than ``max_cam_shift`` from that of every other vote of the class on the
    adjacent slices (a lesion spans neighbouring slices at one place). Returns the kept
    votes and how many tumour votes were dropped.
    """
    if ev.cam_inside is None:
        return confident, 0
    inside = np.asarray(ev.cam_inside, dtype=np.float64)
    cent = None if ev.cam_centroid is None else np.asarray(ev.cam_centroid, np.float64)
    pos = np.asarray(ev.position, dtype=np.float64)
    kept: dict[str, list[int]] = {}
    dropped = 0
    for c, idx in confident.items():
        if c == NOTUMOR:
            kept[c] = idx
            continue
        ok = [i for i in idx if inside[i] >= o.min_cam_inside]
        if cent is not None and len(ok) > 1:
            ok = [i for i in ok if has_close_neighbour(i, ok, pos, cent, o.max_cam_shift)]
        dropped += len(idx) - len(ok)
        kept[c] = ok
    return kept, dropped


def _implausible(plane: str, o: AggregationOptions) -> str:
    """The tumour class a plane's assessed slices cannot show: pituitary on axial series
    (above the sella) unless ``pituitary_on_axial``; else none ("")."""
    return PITUITARY if plane == "axial" and not o.pituitary_on_axial else ""


def _tumour_decision(
    confident: dict[str, list[int]],
    need: int,
    n_eligible: int,
    plane: str,
    o: AggregationOptions,
    classes: Sequence[str],
) -> tuple[str, str] | None:
    """(label, reason) when the tumour evidence decides the series, else None.

    On axial series pituitary votes come from slices above the sella (the sella level is
    excluded), where a pituitary tumour cannot be; the JPEG-trained model calls such slices
    of normal and glioma brains "pituitary". Unless ``pituitary_on_axial``, they neither
    decide the series nor count as a rival tumour class, but enough of them stop a notumor
    answer: the series is indeterminate.
    """
    votes = {c: len(v) for c, v in confident.items()}
    implausible = _implausible(plane, o)
    tumour = sorted(
        (c for c in classes if c not in (NOTUMOR, implausible)), key=lambda c: -votes[c]
    )
    best = tumour[0] if tumour else ""
    runner = votes[tumour[1]] if len(tumour) > 1 else 0
    if best and votes[best] >= need and longest_run(confident[best]) >= o.min_run:
        if runner * 2 <= votes[best]:
            return best, f"{votes[best]} of {n_eligible} eligible slices confidently {best}"
        return (
            INDETERMINATE,
            f"conflicting tumour evidence: {best} {votes[best]} vs {tumour[1]} {runner} slices",
        )
    if implausible and votes.get(implausible, 0) >= need:
        return (
            INDETERMINATE,
            f"{votes[implausible]} of {n_eligible} eligible slices called {implausible} above "
            "the sella level of an axial series, where a pituitary tumour cannot be: the "
            "model's pituitary class is unreliable there, so brainxai abstains",
        )
    return None


def _pituitary_extent(
    ev: SliceEvidence, votes: Sequence[int], o: AggregationOptions
) -> tuple[str, str] | None:
    """An abstention when the pituitary votes spread wider than a pituitary tumour can."""
    pos = np.asarray(ev.position, dtype=np.float64)
    steps = np.abs(np.diff(np.sort(pos)))
    step = float(np.median(steps)) if len(steps) else 1.0
    span = float(np.ptp(pos[list(votes)])) + step if len(votes) else 0.0
    if span <= o.pituitary_max_span:
        return None
    return INDETERMINATE, (
        f"{len(votes)} pituitary votes spread over {span:.0f} mm along the slice axis, more "
        f"than a pituitary tumour spans (at most {o.pituitary_max_span:.0f} mm): the "
        "model's pituitary class is unreliable here, so brainxai abstains"
    )


def unsupported_sequence(decision: SeriesDecision, sequence: str) -> SeriesDecision:
    """An abstention for a contrast the tumour classes were not trained on (T2, FLAIR...)."""
    reason = (
        f"{sequence.upper()} series: the model's tumour classes were trained on T1 "
        f"post-contrast images, so its answer here is not reliable (it said: {decision.label})"
    )
    return replace(decision, label=INDETERMINATE, reason=reason)


def decide_study(series: Sequence[SeriesDecision]) -> tuple[str, str, dict[str, float]]:
    """Combine series decisions: (label, reason, mean probabilities over series).

    One tumour class agreed by every decided series wins; conflicting tumour classes give
    indeterminate; notumor needs every series notumor (an undecided series may be hiding a
    tumour the others missed).
    """
    if not series:
        return INDETERMINATE, "no series could be assessed", {}
    decided = [s for s in series if s.label != INDETERMINATE]
    valid = [s for s in series if not any(np.isnan(v) for v in s.probabilities.values())]
    probs: dict[str, float] = {}
    if valid:
        for c in valid[0].probabilities:
            probs[c] = float(np.mean([s.probabilities[c] for s in valid]))
    if not decided:
        why = list(dict.fromkeys(s.reason for s in series))
        more = f" (+{len(why) - 2} more)" if len(why) > 2 else ""
        return INDETERMINATE, "no series gave a decision: " + "; ".join(why[:2]) + more, probs
    tumours = {s.label for s in decided if s.label != NOTUMOR}
    if len(tumours) > 1:
        return INDETERMINATE, f"series disagree: {sorted(tumours)}", probs
    if tumours:
        label = tumours.pop()
        n = sum(1 for s in decided if s.label == label)
        return label, f"{n} of {len(series)} series called {label}", probs
    if len(decided) < len(series):
        return INDETERMINATE, "some series notumor, others undecided", probs
    return NOTUMOR, f"all {len(decided)} assessed series called notumor", probs
