"""The TRF's circular-shift null (:mod:`neuro.trf_null`) against a brute-force reference: every
draw's stimulus rotated on its zero-padded circle, the explicit lagged design built, every fold
refitted at its chosen per-channel alphas, and the concatenated held-out r formed as documented."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from neuro.lagged import lag_samples
from neuro.trf import Block, FeatureTransform, fit_trf

SF = 100


def _design(xp: np.ndarray, n: int, lags: np.ndarray, shift: int) -> np.ndarray:
    """``[n, L * F]`` (lag-major): column (l, f) at t is ``xp[(t - shift - l) mod len(xp), f]``."""
    t = np.arange(n)[:, None]
    cols = [xp[(t - shift - lag) % len(xp)][:, 0, :] for lag in lags]
    return np.concatenate(cols, axis=1)


def _reference_null(res, xs, ys, lags, blocks, shifts):
    """Null r ``[draws, C]`` by brute force, for the shifts the accumulator drew (its row 0 = observed)."""
    pad = int(np.abs(lags).max())
    fold_of = res.fold_of_trial
    ys = [y - y.mean(0) for y in ys]
    var_y = sum((y * y).sum(0) for y in ys)
    out = []
    for d in range(len(shifts)):
        num = np.zeros(ys[0].shape[1])
        var = np.zeros(ys[0].shape[1])
        for k in range(int(fold_of.max()) + 1):
            tr, te = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
            tf = FeatureTransform.fit([xs[i] for i in tr], blocks)
            xt = [np.pad(tf(x), ((0, pad), (0, 0))) for x in xs]
            plain = {i: _design(xt[i], len(ys[i]), lags, 0) for i in range(len(xs))}
            shifted = {i: _design(xt[i], len(ys[i]), lags, int(shifts[d, i])) for i in range(len(xs))}
            G = sum(plain[i].T @ plain[i] for i in tr)
            s = sum(plain[i].sum(0) for i in tr)
            ysum = sum(ys[i].sum(0) for i in tr)
            n = sum(len(ys[i]) for i in tr)
            B = sum(shifted[i].T @ ys[i] for i in tr) - np.outer(s, ysum / n)
            for c in range(len(num)):
                W = np.linalg.solve(G + res.alphas[k][res.alpha_index[k, c]] * np.eye(len(G)), B[:, c])
                for i in te:
                    num[c] += (shifted[i] @ W) @ ys[i][:, c]
                    p = plain[i] @ W
                    var[c] += ((p - p.mean()) ** 2).sum()
        out.append(num / np.sqrt(var * var_y))
    return np.array(out)


@pytest.mark.parametrize("tmin,n_feat,kind,dtype", [(-0.05, 3, "zscore", "float64"), (0.0, 6, "pca", "float64"),
                                                     (-0.05, 3, "zscore", "float32")])
def test_null_equals_the_brute_force_refit(tmin, n_feat, kind, dtype):
    rng = np.random.default_rng(11)
    xs = [gaussian_filter1d(rng.normal(size=(n, n_feat)), 2, axis=0) for n in (300, 340, 320, 310, 330)]
    ys = [rng.normal(size=(len(x), 4)) + 0.4 * np.roll(x[:, :1], 4, axis=0) for x in xs]
    lags = lag_samples(tmin, 0.08, SF)
    blocks = [Block(n_feat, kind, 4)]
    res = fit_trf(xs, ys, SF, tmin=tmin, tmax=0.08, folds=3, blocks=blocks, n_draws=6, min_shift=30, refit=False,
                  null_dtype=dtype)
    from neuro.stats import draw_shifts

    n_fft = [len(y) + int(np.abs(lags).max()) for y in ys]
    shifts = np.vstack([np.zeros((1, len(ys)), dtype=np.int64), draw_shifts(n_fft, 6, 30, 0)])
    ref = _reference_null(res, xs, ys, lags, blocks, shifts)
    np.testing.assert_allclose(ref[0], res.r, atol=1e-9)
    np.testing.assert_allclose(res.r_null_observed, ref[0], atol=1e-9)
    np.testing.assert_allclose(res.r_null, ref[1:], atol=1e-9 if dtype == "float64" else 1e-5)
    assert (res.alpha_index != res.alpha_index[:, :1]).any()  # channels chose different alphas: per-channel M


def test_null_is_the_same_in_small_channel_chunks_and_draw_blocks(monkeypatch):
    import neuro.trf_null as tn

    rng = np.random.default_rng(12)
    xs = [gaussian_filter1d(rng.normal(size=(n, 2)), 2, axis=0) for n in (260, 280, 300, 270)]
    ys = [rng.normal(size=(len(x), 7)) + 0.5 * np.roll(x[:, :1], 3, axis=0) for x in xs]
    kw = dict(tmin=-0.03, tmax=0.06, folds=3, n_draws=9, min_shift=30, refit=False, null_dtype="float64")
    whole = fit_trf(xs, ys, SF, **kw)
    monkeypatch.setattr(tn, "CC_BYTES", 1)      # one channel per cross-covariance chunk
    monkeypatch.setattr(tn, "BLOCK_ROWS", 4)    # four draws per product
    chunked = fit_trf(xs, ys, SF, **kw)
    np.testing.assert_allclose(chunked.r_null, whole.r_null, atol=1e-12)
    np.testing.assert_allclose(chunked.p, whole.p, atol=1e-12)
