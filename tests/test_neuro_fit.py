"""`neuro.fit` and `workbench neuro` end to end on simulated 64-channel EEG written as FIF: the
planted channels and lag are found, a null recording finds nothing, the files the app reads are
there, and a second run reuses the cached model features."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_neuro_data import make_corpus

import neuro

PLANTED = ("Cz", "CPz", "FCz")
CHANNELS = list(PLANTED) + ["Fz", "Oz", "T7", "T8", "P3", "P4", "F3", "F4", "O1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), n_clips=16, seconds=10.0, seed=1)


@pytest.fixture(scope="module")
def planted_run(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    fif = neuro.simulate_eeg(corpus, root / "sub-sim_eeg.fif", planted=PLANTED, lag_s=0.15, r=0.15, seed=2)
    return neuro.fit(fif, corpus, root / "neuro" / "sim", channels=CHANNELS, tmin=0.0, tmax=0.3, folds=4,
                     progress=False)


def test_planted_envelope_is_found_on_its_channels_at_its_lag(planted_run):
    s = planted_run.summary
    env = s[s.feature == "envelope"].set_index("channel")
    assert env.loc[list(PLANTED), "significant"].all()
    # at most one false discovery anywhere (BH controls the rate, see test_neuro_trf)
    assert s[~s.channel.isin(PLANTED)]["significant"].sum() <= 1
    # (the spectrogram of these noise carriers carries the same envelope, so it is not a rival here;
    # ranking of sets is tested in test_neuro_trf)
    assert env.loc[list(PLANTED), "r"].min() > env.drop(list(PLANTED))["r"].max()
    assert (np.abs(env.loc[list(PLANTED), "best_lag_s"] - 0.15) <= 0.011).sum() >= 2
    f = planted_run.features
    fe = f[f.feature == "envelope"].set_index("channel")
    assert fe.loc[list(PLANTED), "significant"].all()
    assert np.all(np.abs(fe.loc[list(PLANTED), "best_lag_s"] - 0.15) <= 0.011)
    assert fe[~fe.index.isin(PLANTED)]["significant"].sum() == 0


def test_run_folder_has_the_documented_files(planted_run):
    out = planted_run.out
    meta = json.loads((out / "neuro.json").read_text())
    assert meta["data"] == "simulated" and sorted(meta["channels"]) == sorted(CHANNELS) and meta["has_montage"]
    summary = pd.read_csv(out / "summary.csv")
    assert {"feature", "channel", "r", "best_lag_s", "p", "p_fdr"} <= set(summary.columns)
    assert len(summary) == 3 * len(CHANNELS)  # acoustic, envelope, spectrogram
    assert (summary.p_fdr >= summary.p - 1e-12).all() and summary.p.between(0, 1).all()
    layers = pd.read_csv(out / "layers.csv")
    assert layers.feature.tolist() == ["acoustic", "envelope", "spectrogram"]
    assert (out / "layers.html").read_text().count("plotly") > 0
    for name, rel in meta["files"]["kernels"].items():
        k = np.load(out / rel)
        assert k.shape[0] == len(CHANNELS) and k.shape[2] == len(meta["kernel_lags_s"])
        assert k.shape[1] == meta["feature_sets"].get(name, {"width": 17})["width"]
    assert set(meta["files"]["topomaps"]) == set(layers.feature)
    assert all((out / p).read_bytes()[:4] == b"\x89PNG" for p in meta["files"]["topomaps"].values())
    features = pd.read_csv(out / "features.csv")
    assert {"feature_set", "feature", "channel", "r", "best_lag_s", "p", "p_fdr"} <= set(features.columns)


def test_null_recording_finds_nothing(corpus, tmp_path):
    fif = neuro.simulate_eeg(corpus, tmp_path / "sub-null_eeg.fif", source="none", seed=5)
    res = neuro.fit(fif, corpus, tmp_path / "neuro" / "null", channels=CHANNELS, tmin=0.0, tmax=0.3, folds=4,
                    progress=False)
    assert not res.summary.significant.any()
    assert not res.features.significant.any()


@pytest.mark.slow
def test_cli_fit_with_model_hooks_reuses_the_feature_cache(tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    corpus = make_corpus(tmp_path / "corpus", n_clips=6, seconds=4.0, seed=3)
    fif = tmp_path / "sub-cli_eeg.fif"
    assert main(["neuro", "simulate", "--corpus", str(tmp_path / "corpus"), "--out", str(fif),
                 "--channels", "Cz", "--r", "0.3"]) == 0
    args = ["neuro", "fit", "--recording", str(fif), "--corpus", str(tmp_path / "corpus"), "--model", "cochleagram",
            "--hooks", "cochleagram.hook_out", "--tmin", "0", "--tmax", "0.2", "--folds", "3", "--draws", "200",
            "--no-delta-r2", "--quiet", "--channels", "Cz", "Fz", "--out", str(tmp_path / "ws" / "neuro" / "a")]
    assert main(args) == 0
    assert "cochleagram.hook_out" in capsys.readouterr().out
    caches = [p for p in (tmp_path / "ws" / "caches").iterdir() if p.is_dir()]
    assert len(caches) == 1
    assert (tmp_path / "ws" / "caches" / "neuro-hooks-cochleagram.json").is_file()  # the model's hook list
    import workbench.cache
    import workbench.models

    def no_model(*a, **k):
        raise AssertionError("the model ran again")

    def no_load(*a, **k):
        raise AssertionError("the model was loaded again (its hook list is memoised beside the caches)")

    monkeypatch.setattr(workbench.cache, "build_cache", no_model)
    monkeypatch.setattr(workbench.models, "load", no_load)
    args[-1] = str(tmp_path / "ws" / "neuro" / "b")
    args[args.index("Fz")] = "Oz"  # other channels: same stimulus features
    assert main(args) == 0
    s = pd.read_csv(tmp_path / "ws" / "neuro" / "b" / "summary.csv")
    assert set(s.channel) == {"Cz", "Oz"} and "cochleagram.hook_out" in set(s.feature)
    assert len(corpus) == 6


def test_cli_errors_name_the_problem(tmp_path, capsys):
    from workbench.cli import main

    make_corpus(tmp_path / "corpus", n_clips=3, seconds=2.0)
    rc = main(["neuro", "fit", "--recording", str(tmp_path / "missing_eeg.fif"), "--corpus", str(tmp_path / "corpus"),
               "--out", str(tmp_path / "out")])
    assert rc == 2 and "missing_eeg.fif" in capsys.readouterr().err
    rc = main(["neuro", "simulate", "--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "x_eeg.fif"),
               "--plant", "encoder.blocks.1.hook_resid_post"])
    assert rc == 2 and "needs --model" in capsys.readouterr().err
