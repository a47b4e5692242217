"""Token analyses: planted consistency / edit-distance figures recovered exactly, purity of copied and
shuffled labels, units written as a token cache that `tokens analyze` reads without --hook."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from probes.tokens import metrics, robust

SR, HOP = 1000, 10  # planted source: 100 frames/s


class Planted:
    """Tokens with a planted context dependence and no other noise.

    Frame ``i`` holds a constant value ``v``; its base token is ``round(v * 10)`` (negative values
    give other tokens). Codebook ``k`` replaces the tokens of the first and last ``EDGE[k]`` frames
    of whatever it is given by ``1000 + base`` (an edge artifact), so a slice encoded alone differs
    from the same slice inside its context in exactly ``2 * EDGE[k]`` frames.
    """

    EDGE = (0, 2, 5)
    sample_rate, frame_rate, decode = SR, SR / HOP, None

    def encode(self, clips):
        out = []
        for c in clips:
            base = np.round(c[: len(c) // HOP * HOP].reshape(-1, HOP).mean(1) * 10).astype(np.int64)
            cols = []
            for e in self.EDGE:
                t = base.copy()
                if e:
                    t[:e] += 1000
                    t[-e:] += 1000
                cols.append(t)
            out.append(np.stack(cols, 1))
        return out


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    levels = rng.integers(1, 10, int(seconds * SR / HOP)) / 10
    return np.repeat(levels, HOP).astype(np.float32)


def test_planted_context_dependence_gives_exact_consistency():
    clips = [_clip(6.0, s) for s in range(3)]
    df = robust.consistency(Planted(), clips, slice_s=1.0, context_s=0.5, max_slices_per_clip=3)
    expected = [1 - 2 * e / 100 for e in Planted.EDGE]  # 100-frame slices
    np.testing.assert_allclose(df["consistency"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert (df["slices"] == 9).all() and (df["frames"] == 900).all()


def test_planted_noise_flips_give_exact_edit_distance():
    clips = [_clip(3.0, s) for s in range(4)]

    def flip_every_tenth(x, sr, rng):  # negates frames 0, 10, 20, ...: their tokens change, nothing else
        y = x.copy().reshape(-1, HOP)
        y[::10] *= -1
        return y.reshape(-1)

    def nothing(x, sr, rng):
        return x.copy()

    df = robust.stability(Planted(), clips, {"flip": flip_every_tenth, "none": nothing}).set_index(["test", "codebook"])
    for k in range(3):
        assert df.loc[("flip", k), "ued"] == pytest.approx(0.1, abs=1e-12)
        assert df.loc[("flip", k), "match"] == pytest.approx(0.9, abs=1e-12)
        assert df.loc[("none", k), "ued"] == 0.0 and df.loc[("none", k), "match"] == 1.0
    # the standard perturbations run on any source and give one row per codebook each
    std = robust.stability(Planted(), clips[:1])
    assert set(std["test"]) == set(robust.PERTURBATIONS) and len(std) == 3 * len(robust.PERTURBATIONS)
    assert std.loc[std["test"] == "gain_-6dB", "ued"].gt(0).any()  # halving every level changes its token


def test_edit_distance_counts_insertions_and_collapsing():
    assert metrics.unit_edit_distance([1, 1, 2, 2], [1, 2, 2]) == 0.25
    assert metrics.unit_edit_distance([1, 1, 2, 2], [1, 2, 2], collapse=True) == 0.0
    assert metrics.unit_edit_distance([], []) == 0.0


def test_purity_of_copied_labels_is_one_and_shuffled_is_chance():
    rng = np.random.default_rng(0)
    labels = rng.choice(list("abcdefghij"), size=20_000, p=np.r_[0.3, np.full(9, 0.7 / 9)]).astype(object)
    tokens = pd.factorize(pd.Series(labels))[0]
    r = metrics.purity_mi(tokens, labels)
    assert r["purity"] == 1.0 and r["mi_norm"] == pytest.approx(1.0)
    assert r["mi_bits"] == pytest.approx(r["label_entropy_bits"])
    s = metrics.purity_mi(rng.permutation(tokens), labels, seed=1)
    assert s["purity"] == pytest.approx(s["majority"], abs=0.01)  # shuffled tokens: the majority class
    assert s["purity"] == pytest.approx(s["purity_chance"], abs=0.01)
    assert s["mi_bits"] < 0.01 and s["mi_norm"] < 0.01
    # unlabelled frames (None / "") are left out
    lab = labels.copy()
    lab[:100] = None
    assert metrics.purity_mi(tokens, lab)["frames"] == len(lab) - 100


def test_usage_counts_codes_per_codebook():
    ids = np.stack([np.arange(8) % 4, np.zeros(8, int)], 1)
    u = metrics.usage(ids)
    assert u["codes_used"].tolist() == [4, 1]
    assert u["entropy_bits"].tolist() == [2.0, 0.0] and u["perplexity"].tolist() == [4.0, 1.0]
    rf = metrics.rank_frequency(ids)
    assert rf[rf.codebook == 0]["share"].tolist() == [0.25] * 4


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    """A random-init DAC (16 kHz, 50 frames/s, 3 codebooks of 64) and a cache of its latent and codes."""
    from workbench.cache import build_cache
    from workbench.corpus.nonspeech import synth_nonspeech
    from workbench.models.codec import random_codec

    root = tmp_path_factory.mktemp("tok")
    model = random_codec("dac")
    corpus = synth_nonspeech(3, root / "corpus", seed=0, duration_s=3.2)
    cache = build_cache(model, corpus, ["hook_latent", "quantizer.hook_codes"], root / "cache", verbose=False)
    return model, cache


@pytest.mark.slow
def test_units_cache_round_trip_and_analyze(codec, tmp_path):
    from probes.tokens.analyze import analyze_cache, compare
    from probes.tokens.sources import UnitSource, nearest
    from probes.tokens.units import UNIT_HOOK, load_centroids
    from workbench.cache import ActivationCache
    from workbench.cli import main

    model, cache = codec
    out = tmp_path / "units"
    args = ["tokens", "units", "--cache", str(cache.root), "--hook", "hook_latent", "--k", "8", "--out", str(out)]
    assert main(args) == 0
    units = ActivationCache.open(out, verify=True)
    assert units.hooks == [UNIT_HOOK] and units.hook_dtype(UNIT_HOOK) == "int32"
    assert units.meta["units"]["source_hook"] == "hook_latent" and units.meta["units"]["k"] == 8
    ids = np.asarray(units.acts(UNIT_HOOK))[:, 0]
    np.testing.assert_array_equal(ids, nearest(cache.load("hook_latent"), load_centroids(out)))
    assert units.frames().equals(cache.frames("hook_latent"))
    assert main(args) != 0  # a second run refuses to overwrite the token cache
    # the CLI reads the unit cache without --hook (tables that need no model)
    res = tmp_path / "cli"
    assert main(["tokens", "analyze", "--cache", str(out), "--out", str(res), "--no-model", "--no-cochleagram"]) == 0
    use = pd.read_csv(res / "usage.csv")
    assert use["codes_used"].iloc[0] == len(set(ids.tolist()))
    pur = pd.read_csv(res / "purity.csv")
    assert pur.empty  # one domain and no speakers: nothing to tell apart
    # with the model: units re-encode audio through the random DAC's latent
    res2 = tmp_path / "full"
    analyze_cache(units, res2, source=UnitSource(model, "hook_latent", load_centroids(out)), max_clips=2,
                  slice_s=1.0, context_s=0.5, cochleagram=False)
    cons = pd.read_csv(res2 / "consistency.csv")
    assert cons["consistency"].between(0, 1).all() and cons["frames"].iloc[0] == cons["slices"].iloc[0] * 50 > 0
    stab = pd.read_csv(res2 / "stability.csv")
    assert set(stab["test"]) == set(robust.PERTURBATIONS) and stab["ued"].ge(0).all()
    assert (res2 / "summary.json").is_file() and (res2 / "tokens.html").is_file()
    assert compare([res, res2])["codes_used"].tolist() == [use["codes_used"].iloc[0]] * 2


@pytest.mark.slow
def test_codec_codes_reencode(codec):
    from probes.tokens.sources import ModelSource

    model, _cache = codec
    src = ModelSource(model, "quantizer.hook_codes")
    assert src.decode is not None
    clips = [np.sin(np.linspace(0, 400, 16000)).astype(np.float32) * 0.3]
    df = robust.reencode(src, clips, n=2)
    assert df["test"].tolist() == ["reencode_1"] * 3 + ["reencode_2"] * 3
    assert df["match"].between(0, 1).all()


def test_analyze_refuses_a_float_hook(codec):
    from probes.tokens.analyze import integer_hook

    _, cache = codec
    assert integer_hook(cache, None) == "quantizer.hook_codes"
    with pytest.raises(ValueError, match="tokens units"):
        integer_hook(cache, "hook_latent")


@pytest.mark.slow
def test_token_cochleagrams_average_the_frames_of_each_token(codec):
    from probes.tokens.analyze import token_cochleagrams

    _, cache = codec
    ids = np.asarray(cache.acts("quantizer.hook_codes")).astype(np.int64)
    tc = token_cochleagrams(cache, "quantizer.hook_codes", ids, cache.corpus, top=5)
    assert tc["mean"].shape == (5, 211) and np.isfinite(tc["mean"]).all()
    _codes, counts = np.unique(ids[:, 0], return_counts=True)
    assert sorted(tc["counts"].tolist(), reverse=True) == sorted(counts, reverse=True)[:5]
