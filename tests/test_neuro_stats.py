"""The TRF p-value from the null's Gaussian tail (calibrated on null data, agrees with the rank p,
reaches below 1 / (draws + 1)), FDR per feature set, and the layer curve on responsive channels."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from neuro.api import fit_feature_sets
from neuro.stats import tail_p_value
from neuro.stimulus import FeatureSet
from neuro.trf import Block, fit_trf

SF = 100


def _smooth(rng, n, d, sigma=3.0):
    x = gaussian_filter1d(rng.normal(size=(n, d)), sigma, axis=0)
    return x / x.std(0)


def test_tail_p_is_uniform_for_gaussian_nulls_even_far_below_one_over_draws():
    rng = np.random.default_rng(0)
    p = tail_p_value(rng.normal(size=20000), rng.normal(size=(50, 20000)))  # each column its own null
    assert abs((p < 0.05).mean() - 0.05) < 0.006 and abs((p < 0.001).mean() - 0.001) < 0.0008
    assert abs((p < 0.5).mean() - 0.5) < 0.015


@pytest.mark.slow
def test_trf_tail_p_is_calibrated_on_null_recordings_and_agrees_with_the_rank_p():
    """Null recordings through the refitted circular-shift null: the tail p is ~uniform, also in the
    lower tail, and tracks the 1000-draw rank p."""
    rng = np.random.default_rng(5)
    ps, pp = [], []
    for rep in range(30):
        xs = [_smooth(rng, 600, 1) for _ in range(6)]
        ys = [_smooth(rng, 600, 8, sigma=2.0) for _ in range(6)]  # autocorrelated, unrelated
        res = fit_trf(xs, ys, SF, tmin=0.0, tmax=0.1, folds=3, refit=False, seed=rep, n_draws=1000, min_shift=50)
        ps.append(res.p)
        pp.append(res.p_perm)
    ps, pp = np.concatenate(ps), np.concatenate(pp)  # 240 null p-values
    assert 0.02 <= (ps < 0.05).mean() <= 0.09 and (ps < 0.01).mean() <= 0.03
    assert 0.38 <= (ps < 0.5).mean() <= 0.62
    assert np.abs(ps - pp).max() < 0.05  # the Gaussian tail and the ranks of the same draws agree


def test_tail_p_goes_below_one_over_draws_for_a_planted_response():
    rng = np.random.default_rng(6)
    xs = [_smooth(rng, 800, 1) for _ in range(6)]
    ys = [np.c_[0.5 * np.roll(x, 5, axis=0), np.zeros((800, 1))] + rng.normal(size=(800, 2)) for x in xs]
    res = fit_trf(xs, ys, SF, tmin=0.0, tmax=0.1, folds=3, refit=False, n_draws=50, min_shift=50)
    assert res.p_perm[0] == 1 / 51 and res.p[0] < 1e-6 and res.p[1] > 0.01


@pytest.mark.slow
def test_fdr_is_per_feature_set_and_the_layer_curve_uses_the_responsive_channels():
    """A layer planted on 2 of 24 channels: they pass FDR within that set, null channels do not, and
    the responsive-channel curve ranks the planted layer first by a clear margin."""
    rng = np.random.default_rng(7)
    n_tr, n = 8, 1200
    layers = {name: [_smooth(rng, n, 10) for _ in range(n_tr)] for name in ("block0", "block1", "block2")}
    w = rng.normal(size=10)
    ys = []
    for i in range(n_tr):
        y = rng.normal(size=(n, 24))
        d = np.roll(layers["block1"][i] @ w, 12)
        y[:, :2] += 0.4 * (d / d.std())[:, None]
        ys.append(y)
    sets = [FeatureSet(name, "layer", xs, Block(10, "pca", 6), hook=name) for name, xs in layers.items()]
    summary, table, _ = fit_feature_sets(sets, ys, SF, [f"c{i}" for i in range(24)], tmin=0, tmax=0.2, folds=4,
                                         n_draws=50, progress=False)
    sig = summary[summary["significant"]]
    assert set(sig.loc[sig["feature"] == "block1", "channel"]) == {"c0", "c1"}
    null = summary[~summary["channel"].isin(["c0", "c1"]) | (summary["feature"] != "block1")]
    assert null["significant"].mean() <= 0.05  # false positives among the 70 null tests (BH: FDR, not FWER)
    for _, part in summary.groupby("feature"):  # BH within each set: its own family of 24 channels
        assert part["p_fdr"].notna().all() and (part["p_fdr"] >= part["p"] - 1e-12).all()
    t = table.set_index("feature")
    assert (t["n_responsive"] >= 2).all() and t["r_responsive"].idxmax() == "block1"
    assert t.loc["block1", "r_responsive"] - t["r_responsive"].drop("block1").max() > 0.05
