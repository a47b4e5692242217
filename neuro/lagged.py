"""Time-lagged designs without building them: Gram matrices, cross-products and predictions.

A forward TRF regresses the response ``y(t)`` on the stimulus at lags ``l``: column ``(l, f)`` of the
design is ``x_f(t - l)``, zero where ``t - l`` falls outside the trial (MNE's ``ReceptiveField``
convention). With ``L`` lags and ``F`` features the design has ``P = L * F`` columns (lag-major:
column ``a * F + f`` is feature ``f`` at ``lags[a]``).

Building it costs ``N x P`` memory and ``N P^2`` time for the Gram; but the Gram of a lagged design
is block-Toeplitz up to edge terms: block ``(l, m)`` is the lag-``(l - m)`` auto-covariance of
``x`` minus at most ``|min lag|`` products at the trial's start and ``max lag`` at its end.
:func:`lagged_gram` computes it from ``L`` products of ``N x F x F`` plus those edge terms, exactly
(tests compare it with the explicit design).

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x, lags = rng.normal(size=(50, 2)), np.arange(-2, 4)
>>> X = delay(x, lags)
>>> X.shape
(50, 12)
>>> bool(np.allclose(lagged_gram(x, lags), X.T @ X))
True
"""
from __future__ import annotations

import numpy as np

__all__ = ["lag_samples", "delay", "lagged_gram", "lagged_column_sums", "lagged_cross", "lagged_predict"]


def lag_samples(tmin: float, tmax: float, sfreq: float) -> np.ndarray:
    """Integer lags (samples) from ``tmin`` to ``tmax`` seconds inclusive, as MNE rounds them.

    >>> lag_samples(-0.1, 0.5, 100).tolist()[:3], len(lag_samples(-0.1, 0.5, 100))
    ([-10, -9, -8], 61)
    """
    if tmax < tmin:
        raise ValueError(f"tmax ({tmax}) must be >= tmin ({tmin})")
    return np.arange(int(np.round(tmin * sfreq)), int(np.round(tmax * sfreq)) + 1)


def _spans(lag: int, n: int) -> tuple[slice, slice]:
    """(source rows of x, target rows of t) where ``x(t - lag)`` exists inside a trial of ``n``."""
    return slice(max(0, -lag), min(n, n - lag)), slice(max(0, lag), min(n, n + lag))


def _check(x: np.ndarray, lags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    lags = np.asarray(lags, dtype=np.int64)
    if x.ndim != 2:
        raise ValueError(f"features must be [n_times, n_features], got shape {x.shape}")
    if len(lags) == 0 or np.any(np.diff(lags) != 1):
        raise ValueError("lags must be consecutive integers")
    span = int(lags[-1] - lags[0]) + 1
    if x.shape[0] <= 2 * span + max(0, -int(lags[0])) + max(0, int(lags[-1])):
        raise ValueError(f"a trial of {x.shape[0]} samples is too short for {span} lags")
    return x, lags


def delay(x: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """The explicit lagged design ``[N, L * F]`` (for tests and small problems)."""
    x, lags = _check(x, lags)
    n, f = x.shape
    out = np.zeros((n, len(lags) * f))
    for a, lag in enumerate(lags):
        src, dst = _spans(int(lag), n)
        out[dst, a * f : (a + 1) * f] = x[src]
    return out


def _autocov(x: np.ndarray, n_lags: int) -> np.ndarray:
    """``[L, F, F]``: ``full[d] = x[: n - d].T @ x[d:]`` for ``d < n_lags``; by FFT (one cross-spectrum per
    feature pair) when that is cheaper than ``L`` products over the trial."""
    n, f = x.shape
    if f <= 16:  # measured: OpenBLAS's small products win up to 16 features, the FFT from 17 (10x at 33)
        return np.stack([x[: n - d].T @ x[d:] for d in range(n_lags)])
    from scipy import fft as sp_fft

    n_fft = sp_fft.next_fast_len(n + n_lags, real=True)
    spec = sp_fft.rfft(x, n=n_fft, axis=0)  # [nf, F]
    cross = sp_fft.irfft(np.conj(spec)[:, :, None] * spec[:, None, :], n=n_fft, axis=0)  # [n_fft, F, F]
    return np.ascontiguousarray(cross[:n_lags])


def lagged_gram(x: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """``delay(x, lags).T @ delay(x, lags)`` without the design: ``[P, P]`` float64."""
    x, lags = _check(x, lags)
    n, f = x.shape
    n_lags = len(lags)
    # full[d] = sum_s x(s)^T x(s + d): the lag-d auto-covariance over the whole overlap
    full = _autocov(x, n_lags)
    # head[d, h] = the first h terms of full[d]; tail[d, k] = its last k terms
    h_max, k_max = max(0, -int(lags[0])), max(0, int(lags[-1]))
    zeros = np.zeros((n_lags, 1, f, f))
    head = zeros
    if h_max:
        shifted = np.stack([x[d : d + h_max] for d in range(n_lags)])  # [L, h, F]
        prods = x[:h_max][None, :, :, None] * shifted[:, :, None, :]  # [L, h, F, F] outer products
        head = np.concatenate([zeros, np.cumsum(prods, axis=1)], axis=1)
    tail = zeros
    if k_max:
        ends = x[n - k_max :][::-1]  # ends[j - 1] = x(n - j)
        starts = np.stack([x[n - d - k_max : n - d][::-1] for d in range(n_lags)])  # [d, j - 1] = x(n - d - j)
        prods = starts[:, :, :, None] * ends[None, :, None, :]
        tail = np.concatenate([zeros, np.cumsum(prods, axis=1)], axis=1)
    # block (a, b) with l = lags[a] >= m = lags[b]: full[l - m] minus the head terms before
    # s = max(0, -l) and the last max(0, m) terms (where x(t - l) or x(t - m) leaves the trial)
    a_idx, b_idx = np.tril_indices(n_lags)
    d = a_idx - b_idx
    blocks = (full[d] - head[d, np.maximum(0, -lags[a_idx])] - tail[d, np.maximum(0, lags[b_idx])])
    g4 = np.empty((n_lags, n_lags, f, f))
    g4[a_idx, b_idx] = blocks
    g4[b_idx, a_idx] = blocks.transpose(0, 2, 1)
    return g4.transpose(0, 2, 1, 3).reshape(n_lags * f, n_lags * f)


def lagged_column_sums(x: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Column sums ``[P]`` of the lagged design."""
    x, lags = _check(x, lags)
    return np.concatenate([x[_spans(int(lag), len(x))[0]].sum(0) for lag in lags])


def lagged_cross(x: np.ndarray, y: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """``delay(x, lags).T @ y``: ``[P, C]`` float64."""
    x, lags = _check(x, lags)
    y = np.asarray(y, dtype=np.float64)
    if len(y) != len(x):
        raise ValueError(f"features have {len(x)} samples but the response has {len(y)}")
    out = []
    for lag in lags:
        src, dst = _spans(int(lag), len(x))
        out.append(x[src].T @ y[dst])
    return np.concatenate(out, axis=0)


def lagged_predict(x: np.ndarray, weights: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """``delay(x, lags) @ weights`` for ``weights [P, C]``: ``[N, C]``."""
    x, lags = _check(x, lags)
    f = x.shape[1]
    out = np.zeros((len(x), weights.shape[1]))
    for a, lag in enumerate(lags):
        src, dst = _spans(int(lag), len(x))
        out[dst] += x[src] @ weights[a * f : (a + 1) * f]
    return out
