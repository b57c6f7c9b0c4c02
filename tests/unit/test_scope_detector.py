"""The out-of-scope detector's fit and its leave-one-patient-out check (inference.scope)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import LeaveOneGroupOut

from inference.scope import fit_scope, leave_one_case_out, score


def _patients(signal: float, n_cases: int = 6, per_case: int = 60, dim: int = 40, seed: int = 0):
    """Features where in-scope slices differ along one shared direction by ``signal`` and
    every patient has its own offset in the other directions."""
    rng = np.random.default_rng(seed)
    xs, ys, cs = [], [], []
    for c in range(n_cases):
        y = rng.random(per_case) < 0.5
        x = rng.normal(size=(per_case, dim)) + rng.normal(scale=3.0, size=dim)
        x[:, 0] += signal * y
        xs.append(x)
        ys.append(y)
        cs += [f"case{c}"] * per_case
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys), np.array(cs)


def test_threshold_keeps_the_asked_share_of_in_scope_slices() -> None:
    x, y, _ = _patients(signal=4.0)
    det = fit_scope(x, y, n_components=8, keep_in_scope=0.9)
    p = det.probability(x)
    assert np.all((p >= 0) & (p <= 1))
    assert score(det, x, y).kept == pytest.approx(0.9, abs=0.02)
    assert score(det, x, y).rejected > 0.8


def test_fit_refuses_one_sided_labels() -> None:
    x, _, _ = _patients(signal=1.0)
    with pytest.raises(ValueError, match="in-scope and out-of-scope"):
        fit_scope(x, np.ones(len(x), bool))


def test_leave_one_case_out_matches_scikit_learn_folds() -> None:
    x, y, cases = _patients(signal=3.0)
    got = leave_one_case_out(x, y, cases, n_components=6, l2=1.0)
    kept, rejected = [], []
    for train, test in LeaveOneGroupOut().split(x, y, groups=cases):
        s = score(fit_scope(x[train], y[train], n_components=6, l2=1.0), x[test], y[test])
        kept.append(s.kept)
        rejected.append(s.rejected)
    assert got.groups == 6
    assert got.kept == pytest.approx(np.mean(kept))
    assert got.rejected == pytest.approx(np.mean(rejected))


def test_held_out_patients_expose_what_the_fitting_data_hides() -> None:
    # No shared signal: in-scope is patient noise. The fitting data looks separable with
    # many components; held-out patients are at chance, and only the check says so.
    x, y, cases = _patients(signal=0.0, per_case=30)
    det = fit_scope(x, y, n_components=40, l2=1e-3)
    fitted = score(det, x, y)
    held = leave_one_case_out(x, y, cases, n_components=40, l2=1e-3)
    assert fitted.kept + fitted.rejected > 1.2
    assert held.kept + held.rejected < 1.15


def test_always_examples_join_every_fold() -> None:
    # Every real slice in scope: no fold can be fitted on the cases alone, but the shared
    # examples (out of scope here) join each fold, so every case is scored.
    x, _, cases = _patients(signal=3.0)
    y = np.ones(len(x), bool)
    assert leave_one_case_out(x, y, cases, n_components=6).groups == 0
    rng = np.random.default_rng(1)
    outside = (rng.normal(loc=5.0, size=(80, x.shape[1])).astype(np.float32), np.zeros(80, bool))
    held = leave_one_case_out(x, y, cases, always=outside, n_components=6)
    assert held.groups == 6
    assert held.kept > 0.5


def test_strong_ridge_still_gives_probabilities_that_mean_in_or_out() -> None:
    # A heavy L2 shrinks the logits to ~0; the Platt step spreads them again without
    # changing the order, so 0.5 still separates in from out.
    x, y, _ = _patients(signal=4.0)
    det = fit_scope(x, y, n_components=8, l2=100.0)
    p = det.probability(x)
    assert np.median(p[y]) > 0.75
    assert np.median(p[~y]) < 0.25
    assert score(det, x, y).kept == pytest.approx(0.95, abs=0.02)
