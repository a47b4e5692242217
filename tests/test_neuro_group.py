"""Group statistics (sign-flip, FDR, cluster test over the montage), the noise ceiling, paired layer
tests, bad samples and rates, and a BIDS dataset written with mne-bids read back end to end."""
from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest
from test_neuro_data import make_corpus

from neuro.bad_samples import fix_samples
from neuro.ceiling import ceiling_across_subjects, explainable_variance, r_ceiling
from neuro.group import group_tables
from neuro.stats import sign_flip_test

MONTAGE = mne.channels.make_standard_montage("biosemi64")
PLANTED = ["Cz", "CPz", "FCz", "C1", "C2"]


def _info():
    info = mne.create_info(MONTAGE.ch_names, 100.0, "eeg")
    info.set_montage(MONTAGE)
    return info


def _subjects(rng, n_sub, effect, planted=PLANTED):
    """Per-subject tables as :func:`neuro.sets.subject_tables` makes them: r per (set, channel)."""
    out = {}
    for s in range(n_sub):
        rows, layers = [], []
        for feat, kind, gain in [("envelope", "acoustic", 0.0), ("block0", "layer", 0.5), ("block1", "layer", 1.0)]:
            r = rng.normal(0, 0.02, size=64)
            hit = np.isin(MONTAGE.ch_names, planted)
            r[hit] += effect * gain
            rows += [{"feature": feat, "kind": kind, "channel": c, "r": v} for c, v in zip(MONTAGE.ch_names, r)]
            layers.append({"feature": feat, "kind": kind, "r_mean": r.mean(), "delta_r2_mean": r.mean() * 0.1})
        out[f"sub-{s:02d}"] = {"summary": pd.DataFrame(rows), "layers": pd.DataFrame(layers),
                               "partition": pd.DataFrame()}
    return out


def test_sign_flip_is_exact_and_uniform_under_the_null():
    rng = np.random.default_rng(0)
    _, p, n = sign_flip_test(rng.normal(size=(8, 2000)))
    assert n == 256 and p.min() >= 1 / 256
    assert 0.03 <= (p < 0.05).mean() <= 0.07 and 0.45 <= (p < 0.5).mean() <= 0.55


def test_group_test_finds_planted_channels_with_few_false_positives():
    rng = np.random.default_rng(1)
    g = group_tables(_subjects(rng, 10, 0.1), info=_info(), n_perm=1024)
    grp = g["group"][g["group"].feature == "block1"].set_index("channel")
    assert grp.loc[PLANTED, "significant"].all() and grp.loc[PLANTED, "significant_cluster"].all()
    others = grp.drop(PLANTED)
    assert others["significant"].mean() <= 0.05 and others["significant_cluster"].mean() <= 0.05
    assert g["meta"]["n_sign_flips"] == 1024 and g["meta"]["min_p"] == pytest.approx(1 / 1024)
    # the group layer curve: intervals across subjects, and block1 > block0 with a paired p-value
    lay = g["layers"].set_index("feature")
    assert (lay["r_ci_low"] <= lay["r_mean"]).all() and (lay["r_mean"] <= lay["r_ci_high"]).all()
    test = g["tests"].iloc[0]
    assert (test["a"], test["b"], test["unit"]) == ("block0", "block1", "subject") and test["p"] < 0.01
    assert g["meta"]["layer_consistency"]["best"] == "block1"


@pytest.mark.slow
def test_group_null_finds_nothing():
    rng = np.random.default_rng(2)
    hits = cl = 0
    for rep in range(8):
        g = group_tables(_subjects(rng, 8, 0.0), info=_info(), n_perm=256, seed=rep)
        hits += int(g["group"]["significant"].sum())
        cl += int(g["group"].groupby("feature")["significant_cluster"].any().sum())
    assert hits <= 8  # of 8 x 192 tests; BH at 5 % across 64 channels rarely calls any
    assert cl <= 3    # of 24 (dataset, set) pairs, nominal 1.2


def test_ceiling_equals_the_simulated_one():
    rng = np.random.default_rng(3)
    r_true = np.array([0.5, 0.3, 0.1, 0.0])
    s = rng.normal(size=(20000, 4))
    gain = r_true / np.sqrt(1 - r_true**2)
    subs = [(["a", "b"], list(np.split(gain * s + rng.normal(size=s.shape), 2))) for _ in range(6)]
    ev, n = ceiling_across_subjects(subs)
    assert n == 6
    np.testing.assert_allclose(r_ceiling(ev), r_true, atol=0.05)
    # null: no shared signal -> ~0 explainable variance (bias-corrected, can dip below 0)
    assert abs(explainable_variance(rng.normal(size=(5, 5000, 3)))).max() < 0.01


def test_bad_samples_error_names_the_file_and_channel_and_modes_say_what_they_did():
    x = np.random.default_rng(0).normal(size=(100, 3))
    x[5, 1] = np.nan
    x[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"rec\.fif.*b \(1\).*c \(1\)"):
        fix_samples(x, ["a", "b", "c"], "error", "rec.fif")
    fixed, names, rep = fix_samples(x, ["a", "b", "c"], "interpolate", "rec.fif")
    assert np.isfinite(fixed).all() and names == ["a", "b", "c"] and rep["samples"] == {"b": 1, "c": 1}
    assert fixed[5, 1] == pytest.approx((x[4, 1] + x[6, 1]) / 2)
    fixed, names, rep = fix_samples(x, ["a", "b", "c"], "drop-channel", "rec.fif")
    assert names == ["a"] and rep["dropped"] == ["b", "c"] and fixed.shape == (100, 1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), n_clips=6, seconds=8.0, seed=4)


@pytest.mark.slow
def test_nan_recording_is_refused_then_interpolated_and_said(corpus, tmp_path, capsys):
    import json

    from workbench.cli import main

    fif = tmp_path / "sub-nan_eeg.fif"
    info = mne.create_info(["Cz", "Pz", "Oz"], 100.0, "eeg")
    onsets = np.arange(6) * 9.0 + 0.5
    raw = mne.io.RawArray(np.random.default_rng(0).normal(size=(3, 5600)) * 1e-5, info, verbose="error")
    raw.set_annotations(mne.Annotations(onsets, [8.0] * 6, [c.id for c in corpus]))
    raw._data[1, 1000:1010] = np.nan
    raw.save(fif, verbose="error")
    base = ["neuro", "fit", "--recording", str(fif), "--corpus", str(corpus.root / "manifest.jsonl"), "--tmin", "0",
            "--tmax", "0.1", "--folds", "3", "--draws", "0", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "sub-nan_eeg.fif" in err and "Pz (10)" in err and "--bad-samples" in err
    assert not (tmp_path / "a").exists()
    assert main(base + ["--out", str(tmp_path / "b"), "--bad-samples", "interpolate"]) == 0
    meta = json.loads((tmp_path / "b" / "neuro.json").read_text())
    assert meta["bad_samples"] == {"mode": "interpolate", "samples": {"Pz": 10}, "dropped": []}


def test_low_rate_recording_fails_naming_file_and_rate(corpus, tmp_path, capsys):
    from workbench.cli import main

    fif = tmp_path / "sub-slow_eeg.fif"
    info = mne.create_info(["Cz"], 1.0, "eeg")
    raw = mne.io.RawArray(np.zeros((1, 60)), info, verbose="error")
    raw.set_annotations(mne.Annotations([1.0], [8.0], [corpus[0].id]))
    raw.save(fif, verbose="error")
    rc = main(["neuro", "fit", "--recording", str(fif), "--corpus", str(corpus.root / "manifest.jsonl"),
               "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "sub-slow_eeg.fif" in err and "1 Hz" in err


@pytest.mark.slow
def test_bids_dataset_written_with_mne_bids_is_read_back_and_the_group_finds_the_planted_channels(corpus, tmp_path):
    """10 simulated subjects (one planted envelope response on 2 of 64 channels, own noise) written as
    BIDS by mne-bids; `neuro fit --bids` reads them back: per-subject folders, group tables, ceiling.

    Formerly 7 subjects x 8 channels, where one null channel (T7) passed FDR: with 7 subjects the exact
    sign-flip p cannot go below 1/128, and 6 null channels give a ~9 % chance that one reaches the BH
    cut of rank 3 (p <= 2/128) -- a single draw of a rare event, not a rate. Measured instead on 3
    simulated 10-subject x 64-channel datasets (benchmarks/neuro_group_fpr.py): 0 of 558
    null (set, channel) tests passed FDR. Here the rate is asserted over 62 null channels."""
    from neuro.multi import fit_group
    from neuro.simulate import simulate_subjects

    paths = simulate_subjects(corpus, tmp_path / "bids", 10, bids_task="listen", planted=("Cz", "CPz"), r=0.3)
    assert all(p.name.endswith("_task-listen_eeg.vhdr") for p in paths)
    g = fit_group(None, corpus, tmp_path / "out", bids=tmp_path / "bids", task="listen", tmin=0, tmax=0.25, folds=3,
                  n_draws=0, progress=False)
    assert g["meta"]["subjects"] == [f"sub-{i:02d}" for i in range(1, 11)] and g["meta"]["min_p"] == 1 / 1024
    for s in g["meta"]["subjects"]:
        assert (tmp_path / "out" / s / "summary.csv").is_file()
    files = {p.name for p in (tmp_path / "out" / "group").iterdir()}
    assert {"group.csv", "group_layers.csv", "partition.csv", "ceiling.csv", "layer_tests.csv", "group.json"} <= files
    env = g["group"][g["group"].feature == "envelope"].set_index("channel")
    assert env.loc[["Cz", "CPz"], "significant"].all()
    null = g["group"][~g["group"]["channel"].isin(["Cz", "CPz"])]
    assert null.groupby("feature")["significant"].mean().max() <= 0.05  # <= 3 of 62 null channels per set
    ceil = g["ceiling"].set_index("channel")["r_ceiling"]
    assert (abs(ceil[["Cz", "CPz"]] - 0.3) < 0.05).all() and ceil.drop(["Cz", "CPz"]).median() < 0.05
