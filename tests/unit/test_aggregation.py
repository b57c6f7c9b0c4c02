"""The series/study decision rule on hand-made slice evidence."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from inference.aggregation import (
    INDETERMINATE,
    AggregationOptions,
    SeriesDecision,
    SliceEvidence,
    decide_series,
    decide_study,
    unsupported_sequence,
)

G, M, N, P = (np.eye(4, dtype=np.float32)[k] * 0.9 + 0.025 for k in range(4))


def _evidence(probs: list[np.ndarray], ood: float = 1.0) -> SliceEvidence:
    n = len(probs)
    area = np.ones(n, np.float32)
    return SliceEvidence(
        probs=np.stack(probs),
        head_area=area,
        position=np.arange(n, dtype=np.float32),
        ood_score=np.full(n, ood, np.float32),
        ood_threshold=10.0,
    )


def test_consistent_tumour_slices_give_the_class() -> None:
    # 20 slices: bottom 5 and top 3 excluded; middle has a run of glioma slices.
    probs = [P] * 5 + [N] * 3 + [G] * 5 + [N] * 4 + [P] * 3
    d = decide_series(_evidence(probs))
    assert d.label == "glioma", d.reason
    assert d.slices[0].reason.startswith("skull base")
    assert d.slices[-1].reason.startswith("vertex")


def test_single_confident_outlier_does_not_decide() -> None:
    probs = [N] * 8 + [M] + [N] * 11
    d = decide_series(_evidence(probs))
    assert d.label == "notumor", d.reason


def test_scattered_votes_without_a_run_are_not_enough() -> None:
    probs = [N] * 6 + [G, N, G, N, G, N] + [N] * 8
    opts = AggregationOptions(notumor_fraction=0.9)
    d = decide_series(_evidence(probs), opts)
    assert d.label == INDETERMINATE


def test_conflicting_tumour_classes_abstain() -> None:
    probs = [N] * 7 + [G] * 4 + [M] * 4 + [N] * 5
    d = decide_series(_evidence(probs))
    assert d.label == INDETERMINATE and "conflicting" in d.reason


def _plane(ev: SliceEvidence, plane: str) -> SliceEvidence:
    return SliceEvidence(ev.probs, ev.head_area, ev.position, ev.ood_score, 10.0, plane=plane)


def test_pituitary_votes_above_the_sella_of_an_axial_series_abstain() -> None:
    probs = [N] * 7 + [P] * 5 + [N] * 8
    d = decide_series(_evidence(probs))
    assert d.label == INDETERMINATE and "sella" in d.reason
    assert d.votes["pituitary"] == 5
    # Allowed by option, or on a sagittal series (midline slices show the sella), it decides.
    assert decide_series(_evidence(probs), AggregationOptions(pituitary_on_axial=True)).label == (
        "pituitary"
    )
    assert decide_series(_plane(_evidence(probs), "sagittal")).label == "pituitary"


def test_axial_pituitary_votes_are_no_rival_to_glioma() -> None:
    probs = [N] * 7 + [G] * 4 + [P] * 3 + [N] * 6
    assert decide_series(_evidence(probs)).label == "glioma"
    assert decide_series(_plane(_evidence(probs), "sagittal")).label == INDETERMINATE


def test_tumour_votes_without_a_run_prevent_notumor() -> None:
    probs = [N] * 7 + [G, N, G, N, G] + [N] * 8
    d = decide_series(_evidence(probs), AggregationOptions(notumor_fraction=0.5))
    assert d.label == INDETERMINATE


def test_out_of_distribution_slices_are_not_assessed() -> None:
    d = decide_series(_evidence([G] * 20, ood=50.0))
    assert d.label == INDETERMINATE
    assert not any(s.eligible for s in d.slices)
    assert all("out of distribution" in s.reason for s in d.slices[7:17])


def test_too_little_head_is_excluded() -> None:
    ev = _evidence([G] * 20)
    area = np.ones(20, np.float32)
    area[8:12] = 0.1
    ev = SliceEvidence(ev.probs, area, ev.position, ev.ood_score, ev.ood_threshold)
    d = decide_series(ev)
    assert [s.reason for s in d.slices[8:12]] == ["too little head in slice"] * 4


def test_noise_only_end_slices_do_not_set_the_head_size() -> None:
    # A whole-head 3D series (M025-like): the head shrinks towards the vertex, and the last
    # three slices hold only noise, whose head mask (thresholded on its own range) fills
    # the image. Left in, they would make every upper slice "too little head".
    n = 40
    area = np.concatenate([np.full(30, 0.45), np.linspace(0.4, 0.25, 7), np.full(3, 0.99)])
    signal = np.concatenate([np.full(37, 500.0), np.full(3, 30.0)]).astype(np.float32)
    base = _evidence([N] * n)
    ev = SliceEvidence(
        base.probs, area.astype(np.float32), base.position, base.ood_score, 10.0, signal=signal
    )
    d = decide_series(ev)
    assert [s.reason for s in d.slices[-3:]] == ["no signal (noise only)"] * 3
    assert d.slices[28].eligible  # the largest real head area
    assert d.label == "notumor", d.reason
    # Without the signal check the noise sets the largest area: the series abstains.
    blind = decide_series(replace(ev, signal=None))
    assert blind.slices[28].reason == "too little head in slice"
    assert blind.label == INDETERMINATE


def test_study_rule() -> None:
    def s(label: str) -> SeriesDecision:
        return SeriesDecision(label, "", {"glioma": 0.5, "notumor": 0.5})

    assert decide_study([s("glioma"), s("notumor")])[0] == "glioma"
    assert decide_study([s("glioma"), s("pituitary")])[0] == INDETERMINATE
    assert decide_study([s(INDETERMINATE)])[0] == INDETERMINATE
    assert decide_study([s("notumor"), s(INDETERMINATE)])[0] == INDETERMINATE
    assert decide_study([s("notumor"), s("notumor")])[0] == "notumor"
    assert decide_study([s("glioma"), s(INDETERMINATE)])[0] == "glioma"
    assert decide_study([])[0] == INDETERMINATE
    # An undecided study says why its series did not decide.
    why = SeriesDecision(INDETERMINATE, "only 2 eligible slices (need 3)", {})
    assert decide_study([why, why])[1] == (
        "no series gave a decision: only 2 eligible slices (need 3)"
    )


def test_unsupported_sequence_abstains_and_keeps_the_evidence() -> None:
    d = decide_series(_evidence([N] * 20))
    assert d.label == "notumor"
    u = unsupported_sequence(d, "flair")
    assert u.label == INDETERMINATE and "FLAIR" in u.reason and u.slices == d.slices


def test_sagittal_series_exclude_both_edges() -> None:
    ev = _evidence([N] * 20)
    sag = SliceEvidence(ev.probs, ev.head_area, ev.position, ev.ood_score, 10.0, plane="sagittal")
    d = decide_series(sag)
    assert d.slices[0].reason == d.slices[-1].reason == "edge of the head"
    assert d.slices[10].eligible


def _cam_evidence(
    probs: list[np.ndarray], inside: list[float], centroids: list[tuple[float, float]]
) -> SliceEvidence:
    from dataclasses import replace

    return replace(
        _evidence(probs),
        cam_inside=np.asarray(inside, np.float32),
        cam_centroid=np.asarray(centroids, np.float32),
    )


def test_tumour_votes_with_grad_cam_outside_the_brain_do_not_decide() -> None:
    probs = [N] * 8 + [M] * 5 + [N] * 7
    centre = [(0.5, 0.5)] * 20
    inside_ok = [0.9] * 20
    assert decide_series(_cam_evidence(probs, inside_ok, centre)).label == "meningioma"
    outside = [0.9] * 8 + [0.1] * 5 + [0.9] * 7  # the map sits on the scalp / background
    d = decide_series(_cam_evidence(probs, outside, centre))
    assert d.label == INDETERMINATE
    assert "outside the brain" in d.reason


def test_tumour_votes_whose_grad_cam_jumps_between_slices_do_not_decide() -> None:
    probs = [N] * 8 + [G] * 4 + [N] * 8
    inside = [0.9] * 20
    steady = [(0.5, 0.5)] * 20
    assert decide_series(_cam_evidence(probs, inside, steady)).label == "glioma"
    corners = [(0.1, 0.1), (0.9, 0.9)]
    jumping = [(0.5, 0.5)] * 8 + [corners[i % 2] for i in range(4)] + [(0.5, 0.5)] * 8
    assert decide_series(_cam_evidence(probs, inside, jumping)).label == INDETERMINATE


def test_notumor_needs_enough_of_the_head_assessed() -> None:
    # 40 slices with head, only 5 in the assessable middle: notumor there says too little.
    probs = [N] * 40
    ev = _evidence(probs)
    area = np.full(40, 0.3, np.float32)
    area[18:23] = 1.0  # only these have >= 50 % of the largest head area
    from dataclasses import replace

    d = decide_series(replace(ev, head_area=area))
    assert d.label == INDETERMINATE
    assert "too little to rule out" in d.reason
    assert decide_series(ev).label == "notumor"


def test_a_confident_tumour_run_in_the_unassessed_part_withholds_notumor() -> None:
    # 20 axial slices 2 mm apart: the bottom 7 (skull base) are not assessed. A meningioma
    # there (6 adjacent slices, 12 mm) must not end as "no tumour"; 2 slices (4 mm) may.
    from dataclasses import replace

    def series(n_meningioma: int) -> SeriesDecision:
        probs = [M] * n_meningioma + [N] * (20 - n_meningioma)
        ev = replace(_evidence(probs), position=np.arange(20, dtype=np.float32) * 2)
        return decide_series(ev)

    withheld = series(6)
    assert withheld.label == INDETERMINATE
    assert "notumor withheld" in withheld.reason and "meningioma" in withheld.reason
    assert "12 mm" in withheld.reason
    assert series(2).label == "notumor"
    # Confident slices whose Grad-CAM lies outside the brain do not withhold it.
    ev = replace(
        _evidence([M] * 6 + [N] * 14),
        position=np.arange(20, dtype=np.float32) * 2,
        cam_inside=np.full(20, 0.1, np.float32),
    )
    assert decide_series(ev).label == "notumor"


def test_too_little_assessed_names_a_tumour_run_in_the_unassessed_part() -> None:
    # 40 axial slices 2 mm apart; the detector calls all but 6 middle slices out of scope,
    # and the bottom band holds 6 adjacent confident meningioma slices (12 mm). The series
    # abstains on coverage and says where a tumour may be hiding.
    probs = [N] * 4 + [M] * 6 + [N] * 30
    scope = np.full(40, 0.1, np.float32)
    scope[18:24] = 0.9
    ev = replace(
        _evidence(probs),
        position=np.arange(40, dtype=np.float32) * 2,
        in_scope=scope,
        scope_threshold=0.5,
    )
    d = decide_series(ev)
    assert d.label == INDETERMINATE
    assert "too little to rule out" in d.reason
    assert "notumor withheld" in d.reason and "meningioma" in d.reason and "12 mm" in d.reason
    # Without the run, the count alone.
    plain = decide_series(replace(ev, probs=np.stack([N] * 40)))
    assert "too little to rule out" in plain.reason and "withheld" not in plain.reason


def test_a_small_tumour_run_among_assessed_slices_withholds_notumor() -> None:
    # 30 axial slices, about 14 assessed between the default skull-base and vertex bands: 2
    # adjacent confident glioma slices are fewer than the 3 a tumour class needs here, but
    # 5 mm apart they span a centimetre: not "no tumour" either.
    def series(middle: list[np.ndarray], plane: str = "axial", mm: float = 5.0) -> SeriesDecision:
        probs = [N] * 14 + middle + [N] * (16 - len(middle))
        ev = replace(_evidence(probs), plane=plane, position=np.arange(30, dtype=np.float32) * mm)
        return decide_series(ev)

    two = series([G, G])
    assert two.label == INDETERMINATE
    assert (
        "notumor withheld" in two.reason and "2 adjacent assessed slices over 10 mm" in two.reason
    )
    assert "glioma" in two.reason
    # Scattered single votes are noise, and so are two neighbours 2 mm apart (4 mm).
    assert series([G, N, G]).label == "notumor"
    assert series([G, G], mm=2.0).label == "notumor"
    # Pituitary votes above the sella of an axial series do not withhold it; on a sagittal
    # series (whose central slices show the sella) they do.
    assert series([P, P]).label == "notumor"
    assert series([P, P], plane="sagittal").label == INDETERMINATE


def _band_series(
    band: list[np.ndarray],
    *,
    start: int = 4,
    ood: float = 1.0,
    inside: float = 0.9,
    jumping: bool = False,
) -> SliceEvidence:
    """40 axial slices 2 mm apart (the bottom 14 are the skull-base band); ``band`` fills
    slices ``start`` onwards, the rest are confidently notumor; Grad-CAM in the brain at one
    place."""
    probs = [N] * start + band + [N] * (40 - start - len(band))
    scores = np.full(40, 1.0, np.float32)
    scores[start : start + len(band)] = ood
    cam = np.full(40, 0.9, np.float32)
    cam[start : start + len(band)] = inside
    cent = [((0.1, 0.1) if i % 2 else (0.9, 0.9)) if jumping else (0.5, 0.5) for i in range(40)]
    return replace(
        _evidence(probs),
        position=np.arange(40, dtype=np.float32) * 2,
        ood_score=scores,
        cam_inside=cam,
        cam_centroid=np.asarray(cent, np.float32),
    )


def test_a_long_confident_run_at_the_skull_base_is_admitted_to_the_vote() -> None:
    # 10 adjacent meningioma slices over 20 mm below the assessed band: a skull-base
    # meningioma of a whole-head 3D series. They join the vote and decide it.
    d = decide_series(_band_series([M] * 10))
    assert d.label == "meningioma"
    assert "admitted as one long run" in d.reason and "20 mm" in d.reason
    admitted = [s for s in d.slices if s.eligible and s.reason.startswith("eligible: skull base")]
    assert [s.index for s in admitted] == list(range(4, 14))
    assert d.votes["meningioma"] == 10


def test_short_or_unsound_runs_below_the_assessed_band_do_not_decide() -> None:
    # Each of these stays without a tumour class (the run only withholds notumor, or not even
    # that): 6 slices over 12 mm; 5 slices over 25 mm; pituitary on an axial series; out of
    # distribution; Grad-CAM outside the brain; Grad-CAM jumping between slices; no Grad-CAM
    # at all; the edge of a sagittal series (only axial bands are admitted).
    cases = {
        "short": _band_series([M] * 6),
        "few thick slices": replace(
            _band_series([M] * 5), position=np.arange(40, dtype=np.float32) * 5
        ),
        "pituitary": _band_series([P] * 10),
        "ood": _band_series([M] * 10, ood=50.0),
        "outside": _band_series([M] * 10, inside=0.1),
        "jumping": _band_series([M] * 10, jumping=True),
        "no cam": replace(_band_series([M] * 10), cam_inside=None, cam_centroid=None),
        "sagittal edge": replace(_band_series([M] * 8, start=0), plane="sagittal"),
    }
    for name, ev in cases.items():
        d = decide_series(ev)
        assert d.label in (INDETERMINATE, "notumor"), name
        assert not any(s.reason.startswith("eligible:") for s in d.slices), name
    assert "notumor withheld" in decide_series(cases["short"]).reason
    # The sagittal case is only refused for its plane: the same slices on an axial series are
    # admitted.
    assert decide_series(_band_series([M] * 8, start=0)).label == "meningioma"


def test_pituitary_votes_spread_wider_than_the_sella_do_not_decide() -> None:
    # A coronal series 3 mm apart: pituitary votes over 5 slices (15 mm) decide; over 13
    # slices (39 mm), longer than any pituitary tumour, the series abstains with the reason.
    def series(n: int) -> SeriesDecision:
        probs = [N] * 14 + [P] * n + [N] * (40 - 14 - n)
        ev = replace(
            _evidence(probs), plane="coronal", position=np.arange(40, dtype=np.float32) * 3
        )
        return decide_series(ev)

    assert series(5).label == "pituitary"
    wide = series(13)
    assert wide.label == INDETERMINATE
    assert "spread over 39 mm" in wide.reason


def test_notumor_across_the_hemispheres_needs_three_quarters() -> None:
    # 20 slices; the 12 assessed (edges excluded) hold 8 confident notumor and 4 unsure
    # slices on one side (a lesion the model does not recognise): 67 % notumor.
    unsure = np.array([0.45, 0.0, 0.55, 0.0], np.float32)
    probs = [N] * 4 + [N] * 8 + [unsure] * 4 + [N] * 4
    axial = decide_series(_evidence(probs), AggregationOptions(exclude_bottom=0.2, exclude_top=0.2))
    assert axial.label == "notumor", axial.reason
    for plane in ("sagittal", "coronal"):
        d = decide_series(_plane(_evidence(probs), plane))
        assert len(d.eligible_indices) == 12
        assert d.label == INDETERMINATE and "needs 75%" in d.reason, d.reason
    normal = [N] * 4 + [N] * 10 + [unsure] * 2 + [N] * 4  # 83 %: a normal head
    assert decide_series(_plane(_evidence(normal), "sagittal")).label == "notumor"
