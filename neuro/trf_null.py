"""The TRF's null: circular shifts of the stimulus within trials, with the model refitted per draw.

Shifting held-out predictions is not enough for a cross-validated r: the prediction of a trial in
fold 1 depends on the responses of fold 2 through the fitted weights and vice versa, so the folds'
contributions covary and that null is too narrow (measured here: 2.6 % of null p-values under 0.01).
So each draw shifts every trial's stimulus by its own random amount and refits every fold at its
chosen alpha. That is cheap because a circular shift leaves the Gram of the lagged design unchanged
(up to the zero-padded edges), so each fold's solve ``M = (G + alpha I)^-1`` is reused, and the
cross-products for every shift come from one FFT per trial: ``X_s^T y`` at lag ``l`` is the circular
cross-covariance at ``l + s``. A draw then costs two ``P x P`` products per fold (the weights and
the variance of their predictions); draws and channels go in chunks to bound memory.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import fft as sp_fft

from neuro.lagged import lagged_column_sums
from neuro.stats import p_value

__all__ = ["NullAccumulator"]


class NullAccumulator:
    """Sums, over folds, each draw's numerator and prediction variance of the concatenated r.

    Row 0 of ``shifts`` is all zeros: the observed statistic computed the same (circular) way.
    Responses are centred per trial.
    """

    def __init__(self, responses: Sequence[np.ndarray], shifts: np.ndarray, lags: np.ndarray,
                 chunk_channels: int = 16, chunk_draws: int = 128) -> None:
        self.ys = [np.asarray(y, dtype=np.float64) - np.asarray(y, dtype=np.float64).mean(0) for y in responses]
        self.fy = [sp_fft.rfft(y, axis=0) for y in self.ys]
        self.shifts, self.lags = shifts, np.asarray(lags)
        n_draws, n_chan = shifts.shape[0], self.ys[0].shape[1]
        self.num = np.zeros((n_draws, n_chan))
        self.var_p = np.zeros((n_draws, n_chan))
        self.var_y = sum((y * y).sum(0) for y in self.ys)
        self.chunk_channels, self.chunk_draws = chunk_channels, chunk_draws

    def _cross(self, cc: dict[int, np.ndarray], idx: Sequence[int], ds: slice) -> np.ndarray:
        """``sum_i X_i(shift)^T y_i`` over trials ``idx`` for draws ``ds``: ``[D, P, Cc]`` (lag-major P),
        from each trial's circular cross-covariances ``cc[i] [F, Cc, n]``."""
        out = None
        for i in idx:
            at = (self.shifts[ds, i, None] + self.lags[None, :]) % cc[i].shape[-1]  # [D, L]
            g = cc[i][:, :, at].transpose(2, 3, 0, 1)  # [D, L, F, Cc]
            g = g.reshape(g.shape[0], -1, g.shape[-1])
            out = g if out is None else out + g
        return out

    def add_fold(self, transformed: Sequence[np.ndarray], train_idx: Sequence[int], test_idx: Sequence[int],
                 evals: np.ndarray, evecs: np.ndarray, alpha: float, g_test: np.ndarray) -> None:
        """One fold: features already transformed by this fold's (training-only) transform."""
        M = (evecs / (evals + alpha)) @ evecs.T
        Q = M @ g_test @ M
        S = np.stack([lagged_column_sums(transformed[i], self.lags) for i in test_idx])  # [T, P]
        n_test = np.array([len(self.ys[i]) for i in test_idx], dtype=np.float64)
        trials = list(train_idx) + list(test_idx)
        fx = {i: sp_fft.rfft(np.asarray(transformed[i], dtype=np.float64), axis=0) for i in trials}
        n_chan = self.num.shape[1]
        for c0 in range(0, n_chan, self.chunk_channels):
            cs = slice(c0, min(n_chan, c0 + self.chunk_channels))
            cc = {i: sp_fft.irfft(np.conj(fx[i]).T[:, None, :] * self.fy[i][:, cs].T[None], n=len(self.ys[i]),
                                  axis=-1) for i in trials}  # [F, Cc, n]: sum_t x(t - tau) y(t)
            for d0 in range(0, len(self.shifts), self.chunk_draws):
                ds = slice(d0, min(len(self.shifts), d0 + self.chunk_draws))
                b_tr, b_te = self._cross(cc, train_idx, ds), self._cross(cc, test_idx, ds)
                W = np.matmul(M, b_tr)  # [D, P, Cc]: each draw's refitted weights
                self.num[ds, cs] += (W * b_te).sum(1)
                means = np.matmul(S, W)  # [D, T, Cc]: each test trial's prediction sum
                self.var_p[ds, cs] += ((b_tr * np.matmul(Q, b_tr)).sum(1)
                                       - (means**2 / n_test[None, :, None]).sum(1))

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(observed r [C], null r [draws, C], p [C])``; p one-sided (r > 0)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.nan_to_num(self.num / np.sqrt(np.clip(self.var_p, 0, None) * self.var_y))
        return r[0], r[1:], p_value(r[0], r[1:])
