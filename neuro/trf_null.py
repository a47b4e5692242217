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
travels with it), with the unrotated trial's Gram.

Draws, channels and lags are laid side by side so that each fold's work is two large matrix
products (``M @ b`` and ``Q @ b``, ``Q = M G_test M``) over ``P x (draws * channels)`` blocks, which
BLAS runs on every core; channels that chose the same alpha share one ``M``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import fft as sp_fft

from neuro.lagged import lagged_column_sums
from neuro.stats import draw_shifts, p_value

__all__ = ["NullAccumulator"]

#: columns (draws x channels) per matrix product, and bytes of cross-covariances held at once
BLOCK_COLUMNS = 8192
CC_BYTES = 256 * 2**20


class NullAccumulator:
    """Sums, over folds, each draw's numerator and prediction variance of the concatenated r.

    Row 0 of :attr:`shifts` is all zeros: the observed statistic. ``responses`` must be centred per
    trial (``fit_trf`` does it).
    """

    def __init__(self, responses: Sequence[np.ndarray], lags: np.ndarray, n_draws: int, min_shift: int,
                 seed: int = 0) -> None:
        self.ys = [np.asarray(y, dtype=np.float64) for y in responses]
        self.lags = np.asarray(lags)
        pad = int(np.abs(self.lags).max())
        self.n_fft = [len(y) + pad for y in self.ys]
        self.fy = [sp_fft.rfft(y, n=n, axis=0) for y, n in zip(self.ys, self.n_fft)]
        self.shifts = np.vstack([np.zeros((1, len(self.ys)), dtype=np.int64),
                                 draw_shifts(self.n_fft, n_draws, min_shift, seed)])
        n_rows, n_chan = self.shifts.shape[0], self.ys[0].shape[1]
        self.num = np.zeros((n_rows, n_chan))
        self.var_p = np.zeros((n_rows, n_chan))
        self.var_y = sum((y * y).sum(0) for y in self.ys)

    def _cross(self, cc: dict[int, np.ndarray], idx: Sequence[int], ds: slice) -> np.ndarray:
        """``sum_i X_i(shift)^T y_i`` over trials ``idx`` for draws ``ds``: ``[P, D * Cc]`` (lag-major P,
        draw-major columns), from each trial's circular cross-covariances ``cc[i] [F, Cc, n]``."""
        out = None
        for i in idx:
            at = (self.shifts[ds, i, None] + self.lags[None, :]) % cc[i].shape[-1]  # [D, L]
            g = cc[i][:, :, at]  # [F, Cc, D, L]
            g = g.transpose(3, 0, 2, 1).reshape(len(self.lags) * g.shape[0], -1)
            out = g if out is None else out + g
        return out

    def add_fold(self, transformed: Sequence[np.ndarray], train_idx: Sequence[int], test_idx: Sequence[int],
                 evals: np.ndarray, evecs: np.ndarray, alpha, g_test: np.ndarray) -> None:
        """One fold: features already transformed by this fold's (training-only) transform; ``alpha``
        a scalar or one per channel."""
        n_chan = self.num.shape[1]
        alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (n_chan,))
        S = np.stack([lagged_column_sums(transformed[i], self.lags) for i in test_idx])  # [T, P]
        n_test = np.array([len(self.ys[i]) for i in test_idx], dtype=np.float64)
        trials = list(train_idx) + list(test_idx)
        fx = {i: np.conj(sp_fft.rfft(np.asarray(transformed[i], dtype=np.float64), n=self.n_fft[i], axis=0)).T
              for i in trials}
        n_feat = fx[trials[0]].shape[0]
        cc_chan = max(1, int(CC_BYTES // (8 * n_feat * sum(self.n_fft[i] for i in trials))))
        for a in np.unique(alpha):
            chans = np.flatnonzero(alpha == a)
            M = (evecs / (evals + a)) @ evecs.T
            Q = M @ g_test @ M
            for c0 in range(0, len(chans), cc_chan):
                cs = chans[c0 : c0 + cc_chan]
                cc = {i: sp_fft.irfft(fx[i][:, None, :] * self.fy[i][:, cs].T[None], n=self.n_fft[i], axis=-1)
                      for i in trials}  # [F, Cc, n]: sum_t x(t - tau) y(t)
                step = max(1, BLOCK_COLUMNS // len(cs))
                for d0 in range(0, len(self.shifts), step):
                    ds = slice(d0, min(len(self.shifts), d0 + step))
                    b_tr, b_te = self._cross(cc, train_idx, ds), self._cross(cc, test_idx, ds)
                    W = M @ b_tr  # each draw's refitted weights, [P, D * Cc]
                    num = (W * b_te).sum(0)
                    var = (b_tr * (Q @ b_tr)).sum(0) - ((S @ W) ** 2 / n_test[:, None]).sum(0)
                    shape = (ds.stop - ds.start, len(cs))
                    self.num[ds, cs] += num.reshape(shape)
                    self.var_p[ds, cs] += var.reshape(shape)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(observed r [C], null r [draws, C], p [C])``; p one-sided (r > 0)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.nan_to_num(self.num / np.sqrt(np.clip(self.var_p, 0, None) * self.var_y))
        return r[0], r[1:], p_value(r[0], r[1:])
