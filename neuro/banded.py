"""Banded ridge (one penalty per feature space) and variance partitioning.

The joint model of several feature spaces (e.g. the acoustic baseline + one layer) penalises each
space with its own ridge penalty: ``W = (G + diag(alpha_1 I_1, ..., alpha_m I_m))^-1 X^T y`` over
the lagged design of all spaces together. Each space's penalty is the one its own model chose by
inner cross-validation, per fold and per channel (:func:`neuro.trf.fit_trf`; an absolute penalty
relative to that space's own Gram, which is the joint Gram's diagonal block), so the spaces keep
the scales they need instead of sharing one compromise alpha. Channels that chose the same
penalties share one Cholesky factorisation per fold. (himalaya's ``MultipleKernelRidgeCV`` also
searches the penalty simplex for the joint model; that search is not done here: cost.)

Variance partitioning (de Heer et al. 2017; himalaya's tutorials) from held-out R^2 (signed
``r |r|``): for two spaces A and B, ``unique(B) = R2(A+B) - R2(A)``, ``unique(A) = R2(A+B) -
R2(B)``, ``shared = R2(A) + R2(B) - R2(A+B)``.

Example
-------
>>> import numpy as np
>>> from neuro.trf import Block, assign_folds, fit_trf
>>> rng = np.random.default_rng(0)
>>> a = [rng.normal(size=(600, 2)) for _ in range(6)]
>>> b = [rng.normal(size=(600, 3)) for _ in range(6)]
>>> ys = [np.roll(x[:, :1] + z[:, :1], 3, axis=0) + rng.normal(size=(600, 2)) for x, z in zip(a, b)]
>>> fold_of = assign_folds(6, 3)
>>> fa, fb = (fit_trf(s, ys, 100, tmin=0, tmax=0.05, fold_of_trial=fold_of, refit=False) for s in (a, b))
>>> joint = fit_banded([a, b], [[Block(2)], [Block(3)]], [fa, fb], ys, 100, tmin=0, tmax=0.05)
>>> part = partition(fa.r, fb.r, joint)
>>> bool((part["unique_b"] > 0.05).all() and (part["unique_a"] > 0.05).all())
True
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import linalg

from neuro.lagged import lag_samples, lagged_cross_gram, lagged_predict
from neuro.trf import Block, FeatureTransform, TRFResult, _pearson, _stats, centre_trials

__all__ = ["fit_banded", "partition", "r2"]


def r2(r: np.ndarray) -> np.ndarray:
    """Signed explained variance of a prediction correlation (a negative r explains nothing: ``r |r|``)."""
    r = np.asarray(r, dtype=np.float64)
    return r * np.abs(r)


def fit_banded(spaces: Sequence[Sequence[np.ndarray]], blocks: Sequence[Sequence[Block]],
               fits: Sequence[TRFResult], responses: Sequence[np.ndarray], sfreq: float, *,
               tmin: float = -0.1, tmax: float = 0.5) -> np.ndarray:
    """Held-out r ``[C]`` of the banded joint model of ``spaces`` (per trial ``[n_i, D_s]`` each).

    ``fits`` are the spaces' own :func:`~neuro.trf.fit_trf` results on the same folds (their
    ``fold_of_trial``, ``alphas`` and per-channel ``alpha_index`` give each space's penalty). When two
    spaces' fits kept their folds (``fit_trf(keep_folds=True)``), the joint system is solved from
    them (:func:`_solve_two`): only the spaces' cross-products are new.
    """
    fold_of = fits[0].fold_of_trial
    if any(not np.array_equal(f.fold_of_trial, fold_of) for f in fits):
        raise ValueError("the spaces' fits must share one assignment of trials to folds")
    lags = lag_samples(tmin, tmax, sfreq)
    ys = centre_trials(responses)
    spaces = [[np.asarray(x, dtype=np.float64) for x in s] for s in spaces]
    n_folds, n_chan = int(fold_of.max()) + 1, ys[0].shape[1]
    predictions: list[np.ndarray | None] = [None] * len(ys)
    for k in range(n_folds):
        train_idx, test_idx = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        # each space's own (training-only) transform: the joint transform is their block diagonal
        tfs = [f.transforms[k] if len(f.transforms) == n_folds else FeatureTransform.fit([s[i] for i in train_idx], bs)
               for f, s, bs in zip(fits, spaces, blocks)]  # the spaces' own fits already made them
        per_space = [[tf(s[i]) for i in range(len(ys))] for tf, s in zip(tfs, spaces)]
        space_of_col = np.tile(np.repeat(np.arange(len(spaces)), [tf.proj.shape[1] for tf in tfs]), len(lags))
        # each space's absolute penalty as its own model chose it (its Gram is the joint Gram's block)
        pen = np.stack([f.alphas[k][f.alpha_index[k]] for f in fits], axis=1)  # [C, m]
        if len(fits) == 2 and all(f.folds is not None for f in fits):
            xs = per_space
            cross = lagged_cross_gram([xs[0][i] for i in train_idx], [xs[1][i] for i in train_idx], lags)
            (ta, ea), (_, eb) = fits[0].folds[k], fits[1].folds[k]
            Wa, Wb = _solve_two(ea, eb, cross, pen)
            y_mean = ta.ysum / ta.n
            for i in test_idx:
                predictions[i] = lagged_predict(xs[0][i], Wa, lags) + lagged_predict(xs[1][i], Wb, lags) + y_mean
            continue
        xt = [np.concatenate([x[i] for x in per_space], axis=1) for i in range(len(ys))]
        train = _stats([xt[i] for i in train_idx], [ys[i] for i in train_idx], lags)
        B = train.B - np.outer(train.s, train.ysum / train.n)
        W = np.zeros((len(train.G), n_chan))
        for key in np.unique(pen, axis=0):
            chans = np.flatnonzero((pen == key).all(1))
            factor = linalg.cho_factor(train.G + np.diag(key[space_of_col]), check_finite=False)
            W[:, chans] = linalg.cho_solve(factor, B[:, chans], check_finite=False)
        y_mean = train.ysum / train.n
        for i in test_idx:
            predictions[i] = lagged_predict(xt[i], W, lags) + y_mean
    centred = [np.concatenate([a - a.mean(0) for a in arrays]) for arrays in (predictions, ys)]
    return _pearson(*centred)


def _solve_two(ea, eb, cross: np.ndarray, pen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Banded weights ``(W_a [Pa, C], W_b [Pb, C])`` of two spaces from their own training Grams'
    eigendecompositions (``ea``, ``eb``: :class:`neuro.trf._Eig`), their cross-products ``cross
    [Pa, Pb]`` and penalties ``pen [C, 2]``, by the Schur complement on space A:

    in the eigenbases, ``[[La + a, X], [X^T, Lb + b]] [u; v] = [ua; vb]`` with ``X = Ua^T cross Ub``;
    ``S(a) = Lb - X^T (La + a)^-1 X`` is formed once per penalty ``a`` and factorised once per pair
    ``(a, b)`` (``S(a) + b I``, the size of one space), then ``u = (La + a)^-1 (ua - X v)``. Equal to
    solving the joint system directly (``tests/test_neuro_banded.py``), ~8x cheaper per factorisation.
    """
    X = ea.evecs.T @ cross @ eb.evecs
    ua, vb = ea.vtb, eb.vtb  # V^T X^T (y - mean) of each space (same training trials and responses)
    n_chan = ua.shape[1]
    u, v = np.zeros((len(ea.evals), n_chan)), np.zeros((len(eb.evals), n_chan))
    eye = np.eye(len(eb.evals))
    for a in np.unique(pen[:, 0]):
        ca = np.flatnonzero(pen[:, 0] == a)
        da = 1.0 / (ea.evals + a)
        S = np.diag(eb.evals) - X.T @ (da[:, None] * X)
        rhs = vb[:, ca] - X.T @ (da[:, None] * ua[:, ca])
        for b in np.unique(pen[ca, 1]):
            cb = ca[pen[ca, 1] == b]
            factor = linalg.cho_factor(S + b * eye, check_finite=False)
            v[:, cb] = linalg.cho_solve(factor, rhs[:, pen[ca, 1] == b], check_finite=False)
        u[:, ca] = da[:, None] * (ua[:, ca] - X @ v[:, ca])
    return ea.evecs @ u, eb.evecs @ v


def partition(r_a: np.ndarray, r_b: np.ndarray, r_joint: np.ndarray) -> dict[str, np.ndarray]:
    """Unique and shared R^2 of spaces A and B from held-out r of A, B and the joint A+B model."""
    ra, rb, rj = r2(r_a), r2(r_b), r2(r_joint)
    return {"r2_a": ra, "r2_b": rb, "r2_joint": rj, "unique_a": rj - rb, "unique_b": rj - ra, "shared": ra + rb - rj}
