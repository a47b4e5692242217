"""Banded ridge, variance partitioning, per-channel alphas, the TRF p-value of the reported r, and
feature-set order (issue 19 defects 6 and 8; issue 26)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from neuro.api import fit_feature_sets
from neuro.banded import fit_banded, partition
from neuro.stimulus import FeatureSet
from neuro.trf import Block, assign_folds, fit_trf

SF = 100


def _smooth(rng, n, d, sigma=3.0):
    x = gaussian_filter1d(rng.normal(size=(n, d)), sigma, axis=0)
    return x / x.std(0)


def _world(seed=0, n_tr=8, n=1500, gain=0.5):
    """Space A drives channel 0, space B channel 1, both channel 2; channel 3 is noise."""
    rng = np.random.default_rng(seed)
    a = [_smooth(rng, n, 3) for _ in range(n_tr)]
    b = [_smooth(rng, n, 4) for _ in range(n_tr)]
    ys = []
    for xa, xb in zip(a, b):
        y = rng.normal(size=(n, 4))
        da, db = np.roll(xa[:, 0], 5), np.roll(xb @ np.array([1.0, -0.5, 0.3, 0.0]), 8)
        y[:, 0] += gain * da
        y[:, 1] += gain * db / db.std()
        y[:, 2] += gain * (da + db / db.std()) / np.sqrt(2)
        ys.append(y)
    return a, b, ys


def test_banded_model_of_one_space_equals_its_own_ridge():
    a, _, ys = _world(1)
    fa = fit_trf(a, ys, SF, tmin=0, tmax=0.1, fold_of_trial=assign_folds(len(ys), 4), refit=False)
    r = fit_banded([a], [[Block(3)]], [fa], ys, SF, tmin=0, tmax=0.1)
    np.testing.assert_allclose(r, fa.r, atol=1e-9)


def test_two_space_solve_from_the_spaces_own_folds_equals_the_joint_system():
    a, b, ys = _world(3)
    fold_of = assign_folds(len(ys), 4)
    kw = dict(tmin=-0.02, tmax=0.1, fold_of_trial=fold_of, refit=False)
    fa, fb = (fit_trf(s, ys, SF, keep_folds=True, **kw) for s in (a, b))
    fast = fit_banded([a, b], [[Block(3)], [Block(4)]], [fa, fb], ys, SF, tmin=-0.02, tmax=0.1)
    fa.folds = fb.folds = None  # the direct Cholesky solve of the joint Gram
    direct = fit_banded([a, b], [[Block(3)], [Block(4)]], [fa, fb], ys, SF, tmin=-0.02, tmax=0.1)
    pairs = {(k, ia, ib) for k in range(4) for ia, ib in zip(fa.alpha_index[k], fb.alpha_index[k])}
    assert len(pairs) > 4  # channels differ in their penalty pairs: every branch of the solve runs
    np.testing.assert_allclose(fast, direct, atol=1e-9)


def test_partition_attributes_variance_to_the_planted_spaces_and_nothing_to_noise():
    a, b, ys = _world(2)
    fold_of = assign_folds(len(ys), 4)
    fa, fb = (fit_trf(s, ys, SF, tmin=0, tmax=0.1, fold_of_trial=fold_of, refit=False) for s in (a, b))
    joint = fit_banded([a, b], [[Block(3)], [Block(4)]], [fa, fb], ys, SF, tmin=0, tmax=0.1)
    part = partition(fa.r, fb.r, joint)
    assert part["unique_a"][0] > 0.1 and abs(part["unique_b"][0]) < 0.01  # A's channel
    assert part["unique_b"][1] > 0.1 and abs(part["unique_a"][1]) < 0.01  # B's channel
    assert part["unique_a"][2] > 0.04 and part["unique_b"][2] > 0.04     # both
    assert max(abs(v[3]) for v in part.values()) < 0.01                 # noise: nothing anywhere
    # the joint model is at least as good as the better single space on every driven channel
    assert (joint[:3] >= np.maximum(fa.r, fb.r)[:3] - 0.01).all()


def _sets(seed, planted: str | None, n_tr: int = 10, n: int = 1500):
    """An acoustic set and three 'layers' (20-d, PCA-8); ``planted`` drives channels 0-2 beyond the
    acoustic drive every channel 0-3 gets."""
    rng = np.random.default_rng(seed)
    env = [_smooth(rng, n, 1) for _ in range(n_tr)]
    layers = {name: [_smooth(rng, n, 20) for _ in range(n_tr)] for name in ("block0", "block1", "block2")}
    w = rng.normal(size=20)
    ys = []
    for i in range(n_tr):
        y = rng.normal(size=(n, 6))
        y[:, :4] += 0.4 * np.roll(env[i], 10, axis=0)
        if planted:
            d = np.roll(layers[planted][i] @ w, 12)
            y[:, :3] += 0.4 * (d / d.std())[:, None]
        ys.append(y)
    sets = [FeatureSet(name, "layer", xs, Block(20, "pca", 8), hook=name) for name, xs in layers.items()]
    return FeatureSet("envelope", "acoustic", env, Block(1), columns=["envelope"]), sets, ys


@pytest.mark.slow
def test_delta_r2_planted_layer_has_the_largest_unique_variance():
    env, layers, ys = _sets(3, "block1")
    summary, table, _ = fit_feature_sets([env] + layers, ys, SF, [f"c{i}" for i in range(6)], tmin=0, tmax=0.2,
                                         folds=5, n_draws=0, progress=False)
    d = table.set_index("feature")["delta_r2_mean"]
    assert d.idxmax() == "block1" and d["block1"] > 0.03
    assert abs(d["block0"]) < 0.005 and abs(d["block2"]) < 0.005
    # the acoustic share is attributed to the baseline, not the layers
    part_ok = table.set_index("feature").loc["block1", "shared_r2_mean"]
    assert abs(part_ok) < 0.02


@pytest.mark.slow
def test_delta_r2_null_layers_add_nothing():
    env, layers, ys = _sets(4, None)
    _, table, _ = fit_feature_sets([env] + layers, ys, SF, [f"c{i}" for i in range(6)], tmin=0, tmax=0.2,
                                   folds=5, n_draws=0, progress=False)
    d = table.set_index("feature")["delta_r2_mean"]
    assert d.drop("envelope").abs().max() < 0.005


def test_feature_set_order_does_not_matter():
    """Issue 19 defect 6: an acoustic set after a layer raised UnboundLocalError."""
    env, layers, ys = _sets(5, "block0", n_tr=6, n=800)
    names = [f"c{i}" for i in range(6)]
    kw = dict(tmin=0, tmax=0.05, folds=3, n_draws=0, progress=False)
    s1, t1, _ = fit_feature_sets([env, layers[0]], ys, SF, names, **kw)
    s2, t2, _ = fit_feature_sets([layers[0], env], ys, SF, names, **kw)
    key = ["feature", "channel"]
    a, b = s1.sort_values(key).reset_index(drop=True), s2.sort_values(key).reset_index(drop=True)
    np.testing.assert_allclose(a["r"], b["r"], atol=1e-12)
    np.testing.assert_allclose(t1.set_index("feature").loc["block0", "delta_r2_mean"],
                               t2.set_index("feature").loc["block0", "delta_r2_mean"], atol=1e-12)


def test_per_channel_alpha_makes_stacked_subjects_equal_separate_fits():
    a, _, ys1 = _world(6)
    ys2 = [y[:, ::-1] * 3.0 + 1.0 for y in _world(7)[2]]
    fold_of = assign_folds(len(a), 4)
    kw = dict(tmin=0, tmax=0.1, fold_of_trial=fold_of)
    both = fit_trf(a, [np.c_[y1, y2] for y1, y2 in zip(ys1, ys2)], SF, **kw)
    one, two = fit_trf(a, ys1, SF, **kw), fit_trf(a, ys2, SF, **kw)
    np.testing.assert_allclose(both.r, np.r_[one.r, two.r], atol=1e-10)
    np.testing.assert_allclose(both.kernel, np.concatenate([one.kernel, two.kernel]), atol=1e-8)


@pytest.mark.parametrize("tmin", [-0.05, 0.0])
def test_trf_p_value_is_for_the_reported_r(tmin):
    """Issue 19 defect 8: the null's observed statistic was the circular r, not the reported one."""
    a, _, ys = _world(8, n_tr=6, n=800)
    res = fit_trf(a, ys, SF, tmin=tmin, tmax=0.1, folds=3, n_draws=50, min_shift=50)
    np.testing.assert_allclose(res.r_null_observed, res.r, atol=1e-9)
    assert res.p[0] < 0.05 and res.p[3] > 0.05
