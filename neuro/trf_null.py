"""The TRF's null: circular shifts of the stimulus within trials, with the model refitted per draw.

Shifting held-out predictions is not enough for a cross-validated r: the prediction of a trial in
fold 1 depends on the responses of fold 2 through the fitted weights and vice versa, so the folds'
contributions covary and that null is too narrow (measured here: 2.6 % of null p-values under 0.01).
So each draw shifts every trial's stimulus by its own random amount and refits every fold at its
chosen alphas (one per channel). That is cheap because a circular shift leaves the Gram of the
lagged design unchanged up to the edges, so each fold's solve ``M = (G + alpha I)^-1`` is reused,
and the cross-products for every shift come from one FFT per trial: ``X_s^T y`` at lag ``l`` is the
circular cross-covariance at ``l + s``.

The observed statistic is the reported r itself: every trial is zero-padded by the lag span
before the FFT, so the unshifted cross-products are exactly the zero-padded lagged design's
(MNE's convention), and row 0 of the accumulator equals :attr:`TRFResult.r` (tested to 1e-9). A
draw is the same computation for the stimulus rotated on that padded circle (a gap of the lag span
travels with it), with the unrotated trial's Gram (``tests/test_neuro_null.py`` checks every draw
against an explicit refit of the shifted designs).

Work per fold: the cross-covariances of a chunk of channels are laid out ``[channel, time,
feature]``, so gathering every draw's lag window is one fancy index whose rows are already the
``(channel, draw) x (lag, feature)`` matrix ``B^T``; channels are ordered by their alpha, and each
alpha's rows take two matrix products, ``W^T = B_train^T M`` and ``W^T G_test`` (the prediction
variance ``W^T G_test W`` without forming ``M G_test M``). ``dtype=float32`` (the default of
:func:`neuro.trf.fit_trf`'s null) runs the draws' FFTs and products in single precision, about twice
as fast: null r values then agree with the float64 computation to ~1e-6 (tested), while the observed
statistic (row 0) comes in float64 from the fold's own cross-products ``X^T y`` and
eigendecomposition, so that it equals the reported r.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import fft as sp_fft

from neuro.lagged import lagged_column_sums
from neuro.stats import draw_shifts, p_value, tail_p_value

__all__ = ["NullAccumulator"]

#: rows (draws x channels) per matrix product, and bytes of cross-covariances held at once
BLOCK_ROWS = 8192
CC_BYTES = 256 * 2**20


class NullAccumulator:
    """Sums, over folds, each draw's numerator and prediction variance of the concatenated r.

    Row 0 of :attr:`shifts` is all zeros: the observed statistic. ``responses`` must be centred per
    trial (``fit_trf`` does it). ``dtype``: precision of the draws' products (row 0 is float64).
    """

    def __init__(self, responses: Sequence[np.ndarray], lags: np.ndarray, n_draws: int, min_shift: int,
                 seed: int = 0, dtype=np.float64) -> None:
        self.ys = [np.asarray(y, dtype=np.float64) for y in responses]
        self.lags = np.asarray(lags)
        self.dtype = np.dtype(dtype)
        pad = int(np.abs(self.lags).max())
        self.n_fft = [len(y) + pad for y in self.ys]
        self.fy = [sp_fft.rfft(y, n=n, axis=0) for y, n in zip(self.ys, self.n_fft)]  # [nf, C]
        self.shifts = np.vstack([np.zeros((1, len(self.ys)), dtype=np.int64),
                                 draw_shifts(self.n_fft, n_draws, min_shift, seed)])
        n_rows, n_chan = self.shifts.shape[0], self.ys[0].shape[1]
        self.num = np.zeros((n_rows, n_chan))
        self.var_p = np.zeros((n_rows, n_chan))
        self.var_y = sum((y * y).sum(0) for y in self.ys)

    def _cross_t(self, cc: dict[int, np.ndarray], idx: Sequence[int], ds: slice) -> np.ndarray:
        """``B^T = sum_i (X_i(shift)^T y_i)^T`` over trials ``idx`` for draws ``ds``: ``[Cc * D, P]`` (rows
        channel-major, then draw; columns lag-major), from ``cc[i] [Cc, n + L - 1, F]`` (the circle
        followed by its first ``L - 1`` samples, so every lag window is one run of ``L x F`` values)."""
        from numpy.lib.stride_tricks import as_strided

        n_lags = len(self.lags)
        out = None
        for i in idx:
            c = cc[i]
            n = c.shape[1] - n_lags + 1
            win = as_strided(c, shape=(c.shape[0], n, n_lags, c.shape[2]),
                             strides=(c.strides[0], c.strides[1], c.strides[1], c.strides[2]))  # [Cc, n, L, F] view
            at = (self.shifts[ds, i] + self.lags[0]) % n
            if out is None:
                out = np.empty((c.shape[0], len(at), n_lags, c.shape[2]), dtype=c.dtype)
                for j in range(c.shape[0]):  # per channel: a contiguous [D, L, F] gather (measured 1.6x faster)
                    out[j] = win[j][at]
            else:
                for j in range(c.shape[0]):
                    out[j] += win[j][at]
        return out.reshape(out.shape[0] * out.shape[1], -1)

    def add_fold(self, transformed: Sequence[np.ndarray], train_idx: Sequence[int], test_idx: Sequence[int],
                 evals: np.ndarray, evecs: np.ndarray, alpha, g_test: np.ndarray, b_train: np.ndarray,
                 b_test: np.ndarray) -> None:
        """One fold: features already transformed by this fold's (training-only) transform; ``alpha``
        a scalar or one per channel; ``b_train``, ``b_test`` ``[P, C]``: the unshifted cross-products
        ``sum_i X_i^T y_i`` of the training and test trials (the observed row, in float64)."""
        n_chan = self.num.shape[1]
        alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (n_chan,))
        S = np.stack([lagged_column_sums(transformed[i], self.lags) for i in test_idx])  # [T, P]
        n_test = np.array([len(self.ys[i]) for i in test_idx], dtype=np.float64)
        trials = list(train_idx) + list(test_idx)
        low = self.dtype != np.float64
        cdt = np.complex64 if low else np.complex128  # the draws' FFTs in the draws' precision
        fx = {i: np.conj(sp_fft.rfft(np.asarray(transformed[i], dtype=self.dtype).T, n=self.n_fft[i], axis=1))
              for i in trials}  # [F, nf]
        fy = {i: self.fy[i].astype(cdt, copy=False) for i in trials}
        n_feat = fx[trials[0]].shape[0]
        n_lags = len(self.lags)
        ev = evecs.astype(self.dtype) if low else evecs
        Ms = {a: (ev / (evals + a).astype(self.dtype)) @ ev.T for a in np.unique(alpha)}  # [P, P] per alpha
        G, St = g_test.astype(self.dtype, copy=False), S.T.astype(self.dtype)
        order = np.argsort(alpha, kind="stable")  # channels sharing an alpha are neighbours
        cc_chan = max(1, int(CC_BYTES // (self.dtype.itemsize * n_feat * sum(self.n_fft[i] for i in trials))))
        n_rows = len(self.shifts)
        if low:  # row 0 (the observed r) in float64 from the eigendecomposition and the unshifted cross-products
            cs = order
            self._rows(np.asarray(b_train, dtype=np.float64)[:, cs].T, np.asarray(b_test, dtype=np.float64)[:, cs].T,
                       slice(0, 1), cs, alpha, lambda b, a: evecs @ ((evecs.T @ b.T) / (evals[:, None] + a[None, :])),
                       g_test, S.T, n_test)
        for c0 in range(0, n_chan, cc_chan):
            cs = order[c0 : c0 + cc_chan]
            cc = {i: self._circle(sp_fft.irfft(fy[i][:, cs].T[:, None, :] * fx[i][None], n=self.n_fft[i], axis=2),
                                  n_lags) for i in trials}  # [Cc, n + L - 1, F]: sum_t x(t - tau) y(t)
            step = max(1, BLOCK_ROWS // len(cs))
            for d0 in range(1 if low else 0, n_rows, step):
                ds = slice(d0, min(n_rows, d0 + step))
                self._rows(self._cross_t(cc, train_idx, ds), self._cross_t(cc, test_idx, ds), ds, cs, alpha,
                           Ms, G, St, n_test)

    @staticmethod
    def _circle(cc_t: np.ndarray, n_lags: int) -> np.ndarray:
        """``[Cc, F, n]`` (FFT axis last: the fast layout) -> ``[Cc, n + L - 1, F]``, the circle's first
        ``L - 1`` samples repeated at its end."""
        n = cc_t.shape[2]
        out = np.empty((cc_t.shape[0], n + n_lags - 1, cc_t.shape[1]), dtype=cc_t.dtype)
        out[:, :n] = cc_t.transpose(0, 2, 1)
        out[:, n:] = out[:, : n_lags - 1]
        return out

    def _rows(self, b_tr: np.ndarray, b_te: np.ndarray, ds: slice, cs: np.ndarray, alpha: np.ndarray, solve, G, St,
              n_test) -> None:
        """Add draws ``ds`` of channels ``cs`` (ordered by alpha) to the sums, from their cross-products
        ``B^T`` (rows channel-major, then draw); ``solve`` is ``{alpha: M}`` or a function
        ``(B^T rows, alphas of those rows) -> W [P, rows]``."""
        n_d = ds.stop - ds.start
        num = np.empty(len(cs) * n_d)
        var = np.empty(len(cs) * n_d)
        for a in np.unique(alpha[cs]):
            sel = np.flatnonzero(alpha[cs] == a)
            rows = slice(sel[0] * n_d, (sel[-1] + 1) * n_d)  # contiguous: channels are ordered by alpha
            if callable(solve):
                W = solve(b_tr[rows], np.full(rows.stop - rows.start, a)).T
            else:
                W = b_tr[rows] @ solve[a]  # each draw's refitted weights, [R, P]
            num[rows] = np.einsum("rp,rp->r", W, b_te[rows], dtype=np.float64)
            var[rows] = (np.einsum("rp,rp->r", W, W @ G, dtype=np.float64)
                         - (np.asarray(W @ St, dtype=np.float64) ** 2 / n_test).sum(1))
        self.num[ds, cs] += num.reshape(len(cs), n_d).T
        self.var_p[ds, cs] += var.reshape(len(cs), n_d).T

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(observed r [C], null r [draws, C], p [C], p_perm [C])``, one-sided (r > 0): ``p`` from the
        null's Gaussian tail (:func:`neuro.stats.tail_p_value`; the rank p with fewer than 3 draws),
        ``p_perm`` the rank p (floor ``1 / (draws + 1)``)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.nan_to_num(self.num / np.sqrt(np.clip(self.var_p, 0, None) * self.var_y))
        p_perm = p_value(r[0], r[1:])
        return r[0], r[1:], (tail_p_value(r[0], r[1:]) if len(r) > 3 else p_perm), p_perm
