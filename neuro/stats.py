"""Statistics: circular-shift nulls within trials (vectorised over draws) and FDR.

A null draw shifts the stimulus side circularly by a random amount (at least ``min_shift``
samples from zero), which keeps every signal's autocorrelation and breaks only the
stimulus-response alignment. Each statistic is a circular cross-covariance, so one FFT gives it
for every shift at once and a draw is a gather: 1000 draws cost about as much as a few
correlations. Trials are centred one by one first (trial-level offsets are not tracking).

- the TRF's null (shifted stimulus, model refitted per draw) is in :mod:`neuro.trf_null`;
- :func:`lagged_correlation`: AudioSAE-style per-feature correlation at lags 0..500 ms, the best
  lag by ``|r|``, and a p-value whose null takes the same maximum over lags (the lag search is
  corrected for); here the shift runs over the trials laid end to end, so one FFT per pair serves
  every draw;
- :func:`fdr`: Benjamini-Hochberg via ``mne.stats.fdr_correction``.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> xs = [rng.normal(size=(500, 2)) for _ in range(4)]
>>> ys = [np.c_[np.roll(x[:, 0], 3) + rng.normal(size=500), rng.normal(size=500)] for x in xs]
>>> res = lagged_correlation(xs, ys, np.arange(0, 6), n_draws=200)
>>> res["lag_index"][0, 0], bool(res["p"][0, 0] < 0.01), bool(res["p"][1, 1] > 0.01)
(np.int64(3), True, True)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import fft as sp_fft

from workbench.conventions import permutation_p

__all__ = ["draw_shifts", "lagged_correlation", "fdr", "p_value", "tail_p_value", "sign_flips", "sign_flip_test", "paired_sign_flip"]


def draw_shifts(lengths: Sequence[int], n_draws: int, min_shift: int, seed: int = 0) -> np.ndarray:
    """``[n_draws, n_trials]`` circular shifts, each in ``[min_shift, n_i - min_shift]``."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_draws, len(lengths)), dtype=np.int64)
    for i, n in enumerate(lengths):
        lo = min(int(min_shift), max(1, n // 4))
        out[:, i] = rng.integers(lo, n - lo + 1, size=n_draws)
    return out


def p_value(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """``(1 + #(null >= observed)) / (1 + n_draws)`` along the first axis of ``null``."""
    return permutation_p(observed, null, axis=0)  # the one rule: workbench.conventions


def tail_p_value(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """One-sided p of ``observed`` from a Gaussian fitted to ``null`` (draws along axis 0), with the
    fit's own uncertainty: ``T = (obs - mean) / (sd sqrt(1 + 1/n))`` is Student-t with ``n - 1``
    degrees of freedom when the draws and the observed statistic are exchangeable Gaussian draws.

    Unlike the rank p (:func:`p_value`, floor ``1 / (n + 1)``) it reaches below ``1 / (n + 1)``, so
    50 draws can support a Benjamini-Hochberg cut over hundreds of tests. It rests on the null being
    Gaussian, which holds for a cross-validated prediction r over thousands of samples (a sum of many
    terms); ``tests/test_neuro_stats.py`` checks its calibration on null data and its agreement with
    the rank p. Not for maxima (e.g. the best lag's |r|): those nulls are skewed.

    >>> null = np.random.default_rng(0).normal(size=(50, 1))
    >>> bool(tail_p_value(np.array([6.0]), null)[0] < 1e-5), bool(tail_p_value(np.array([0.0]), null)[0] > 0.3)
    (True, True)
    """
    from scipy import stats as sp_stats

    null = np.asarray(null, dtype=np.float64)
    n = null.shape[0]
    if n < 3:
        raise ValueError(f"a Gaussian tail needs at least 3 null draws, got {n}")
    sd = null.std(0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (np.asarray(observed, dtype=np.float64) - null.mean(0)) / (sd * np.sqrt(1 + 1 / n))
    p = sp_stats.t.sf(t, n - 1)
    return np.where(sd > 0, p, p_value(observed, null))


def _standardise(trials: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Centre each trial (trial-level offsets are not stimulus tracking) and scale by the std over
    all trials, so sums over the concatenation are correlations."""
    centred = [np.asarray(t, dtype=np.float64) - np.asarray(t, dtype=np.float64).mean(0) for t in trials]
    std = np.sqrt(sum((c * c).sum(0) for c in centred) / sum(len(c) for c in centred))
    std = np.where(std > 0, std, 1.0)
    return [c / std for c in centred]


def lagged_correlation(features: Sequence[np.ndarray], responses: Sequence[np.ndarray], lags: np.ndarray,
                       n_draws: int = 1000, min_shift: int = 100, seed: int = 0,
                       chunk_channels: int = 4) -> dict[str, np.ndarray]:
    """Per (feature, channel): r at every lag, the best lag by ``|r|``, and the p-value of that
    ``|r|`` against circular shifts of the features (max ``|r|`` over lags in each draw).

    Lags are samples (the feature leads the response by ``lag``). Trials are centred and laid end
    to end; a null draw shifts the whole feature track circularly by at least ``min_shift``
    samples, which moves each trial's stimulus within its own trial and onto its neighbours (the
    issue's within-trial shift and trial permutation at once) while keeping every
    autocorrelation. One FFT per (feature, channel) gives the statistic at every shift, and a
    running maximum over the lag window gives every draw's max ``|r|``; the observed r uses the
    same circular alignment. Returns ``r [K, C, L]``, ``best_r [K, C]``, ``lag_index [K, C]``,
    ``p [K, C]``.
    """
    from scipy.ndimage import maximum_filter1d

    x = np.concatenate(_standardise(features), axis=0)
    y = np.concatenate(_standardise(responses), axis=0)
    if len(x) != len(y):
        raise ValueError(f"features have {len(x)} samples in all, responses {len(y)}")
    lags = np.asarray(lags, dtype=np.int64)
    if np.any(np.diff(lags) != 1):
        raise ValueError("lags must be consecutive integers")
    n = len(y)
    n_feat, n_chan = x.shape[1], y.shape[1]
    rng = np.random.default_rng(seed)
    lo = min(int(min_shift), n // 4)
    shifts = rng.integers(lo, n - lo + 1, size=n_draws)
    fx = sp_fft.rfft(x, axis=0).T  # [K, nf]
    r = np.zeros((n_feat, n_chan, len(lags)))
    exceed = np.zeros((n_feat, n_chan))
    for c0 in range(0, n_chan, chunk_channels):
        cs = slice(c0, min(n_chan, c0 + chunk_channels))
        fy = sp_fft.rfft(y[:, cs], axis=0).T  # [Cc, nf]
        xc = sp_fft.irfft(np.conj(fx)[:, None, :] * fy[None], n=n, axis=-1) / n  # [K, Cc, n]: r at lag tau
        r[:, cs] = xc[..., lags % n]
        # max |r| over the window [s + lags[0], s + lags[-1]] for every shift s, then the draws
        window_max = maximum_filter1d(np.abs(xc), size=len(lags), axis=-1, mode="wrap", origin=-(len(lags) // 2))
        start = (shifts + lags[0]) % n
        null_max = window_max[..., start]  # [K, Cc, draws]
        exceed[:, cs] = (null_max >= np.abs(r[:, cs]).max(-1)[..., None]).sum(-1)
    lag_index = np.abs(r).argmax(-1)
    best_r = np.take_along_axis(r, lag_index[..., None], -1)[..., 0]
    return {"r": r, "best_r": best_r, "lag_index": lag_index, "p": (1.0 + exceed) / (1.0 + n_draws)}


def fdr(p: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg over all entries of ``p``: ``(reject, p_fdr)`` of the same shape."""
    from mne.stats import fdr_correction

    p = np.asarray(p, dtype=np.float64)
    reject, p_fdr = np.zeros(p.shape, dtype=bool), np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():  # NaN entries (no test was run) take no part in the correction
        reject[ok], p_fdr[ok] = fdr_correction(p[ok], alpha=alpha, method="indep")
    return reject, p_fdr


def sign_flips(n: int, n_perm: int = 10000, seed: int = 0) -> np.ndarray:
    """``[n_flips, n]`` of +-1: every pattern when ``2^n <= n_perm`` (an exact test; the identity is
    row 0), else the identity and ``n_perm - 1`` random patterns."""
    if 2**n <= n_perm:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
        return 1 - 2 * bits.astype(np.float64)
    rng = np.random.default_rng(seed)
    return np.vstack([np.ones((1, n)), rng.choice([-1.0, 1.0], size=(n_perm - 1, n))])


def sign_flip_test(x: np.ndarray, n_perm: int = 10000, seed: int = 0, tail: int = 1
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """One-sample sign-flip permutation test of the mean of ``x [units, ...]`` (e.g. subjects x
    channels) against 0, per column: ``(mean, p, n_flips)``. ``tail=1``: mean > 0; ``0``: two-sided.
    The smallest reachable p is ``1 / n_flips`` (``2^n`` flips at most)."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(len(x), -1)
    flips = sign_flips(len(x), n_perm, seed)
    null = flips @ flat / len(x)  # [n_flips, cols]; row 0 = observed
    obs = null[0]
    if tail == 0:
        null, obs = np.abs(null), np.abs(obs)
    p = (null >= obs[None] - 1e-12 * np.abs(obs[None])).mean(0)
    return flat.mean(0).reshape(x.shape[1:]), p.reshape(x.shape[1:]), len(flips)


def paired_sign_flip(d: np.ndarray, n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided paired sign-flip test of differences ``d [units]`` (mean 0 under the null)."""
    return float(sign_flip_test(np.asarray(d, dtype=np.float64)[:, None], n_perm, seed, tail=0)[1][0])
