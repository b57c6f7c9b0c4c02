"""Noisy linear imputation of removed pixels, for ROAD (Rong et al. 2022, ICML).

Remove-and-debias replaces the pixels a deletion curve removes by values predicted from
their neighbours instead of a constant, so the image stays close to the data the model
saw and the removed pixels' *shape* leaks as little as possible. Each removed pixel is the
weighted mean of its 8 neighbours (weight 1/6 for the 4 direct ones, 1/12 for the
diagonal ones, as in the paper), known pixels fixed: one sparse symmetric positive definite
system per image, solved here by preconditioned conjugate gradients from a smoothed guess;
then Gaussian noise is added to the imputed values.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, sparse
from scipy.sparse.linalg import cg

from vocabulary.errors import InputError

FloatArray = NDArray[np.float32]
NEIGHBOURS = (
    (-1, -1, 1 / 12),
    (-1, 0, 1 / 6),
    (-1, 1, 1 / 12),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (1, 1, 1 / 12),
)
RTOL = 1e-6


def _system(
    image: NDArray[np.float64], removed: NDArray[np.bool_]
) -> tuple[sparse.csr_matrix, NDArray[np.float64], NDArray[np.float64]]:
    """(A, b, diagonal of A) of "removed pixel = weighted mean of its in-image neighbours"."""
    h, w = image.shape
    r, c = np.nonzero(removed)
    n = r.size
    index = np.full((h, w), -1, dtype=np.int64)
    index[r, c] = np.arange(n)
    diag = np.zeros(n)
    rhs = np.zeros(n)
    rows, cols, vals = [], [], []
    for dr, dc, weight in NEIGHBOURS:
        rr, cc = r + dr, c + dc
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        eq, rr, cc = np.nonzero(inside)[0], rr[inside], cc[inside]
        diag[eq] += weight
        unknown = removed[rr, cc]
        rows.append(eq[unknown])
        cols.append(index[rr[unknown], cc[unknown]])
        vals.append(np.full(int(unknown.sum()), -weight))
        np.add.at(rhs, eq[~unknown], weight * image[rr[~unknown], cc[~unknown]])
    off = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    return (off + sparse.diags(diag)).tocsr(), rhs, diag


def _guess(image: NDArray[np.float64], known: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Normalised Gaussian smoothing of the known pixels at doubling widths (CG start)."""
    weight = known.astype(np.float64)
    guess = np.where(known, image, 0.0)
    todo = ~known
    sigma = 1.0
    while todo.any() and sigma < 4 * max(image.shape):
        num = ndimage.gaussian_filter(image * weight, sigma)
        den = ndimage.gaussian_filter(weight, sigma)
        ok = todo & (den > 1e-8)
        guess[ok] = num[ok] / den[ok]
        todo &= ~ok
        sigma *= 2
    return guess


def linear_imputation(
    image: NDArray[np.floating],
    removed: NDArray[np.bool_],
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> FloatArray:
    """``image`` (H, W) with the ``removed`` pixels imputed from their neighbours.

    ``noise`` is the standard deviation of the Gaussian noise added to imputed pixels (in
    image units; ROAD uses 0.01 of a [0, 1] image). With every pixel removed there is
    nothing to impute from, and the image mean is used.
    """
    img = np.asarray(image, dtype=np.float64)
    gone = np.asarray(removed, dtype=bool)
    if img.ndim != 2 or gone.shape != img.shape:
        raise InputError(f"image {img.shape} and mask {gone.shape} must be one 2-D shape")
    out = img.copy()
    if gone.all():
        out[:] = img.mean()
    elif gone.any():
        a, b, diag = _system(img, gone)
        x0 = _guess(img, ~gone)[gone]
        solved, _ = cg(a, b, x0=x0, rtol=RTOL, maxiter=10 * a.shape[0], M=sparse.diags(1 / diag))
        out[gone] = solved
    if noise > 0 and gone.any():
        gen = rng or np.random.default_rng(0)
        out[gone] += gen.normal(0.0, noise, size=int(gone.sum()))
    return out.astype(np.float32)
