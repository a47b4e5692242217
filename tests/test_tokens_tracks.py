"""`tokens analyze` on every integer track the workbench caches: codec codes (EnCodec, DAC, Mimi: one
column per codebook), cochlear tokens (AuriStream's ``tokens.hook_ids``) and k-means units (test_tokens.py),
each loaded back from the spec its cache records, as the CLI does."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from probes.tokens import robust

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from workbench.corpus.nonspeech import synth_nonspeech

    # 2 domains (music: tones/chords, environment: noise/clicks) so purity against domain has two classes
    return synth_nonspeech(4, tmp_path_factory.mktemp("corpus") / "c", seed=0, duration_s=2.4,
                           kinds=["pink_noise", "tone", "clicks", "chord"])


def _analyze_cli(cache_dir, out, *extra):
    from workbench.cli import main

    assert main(["tokens", "analyze", "--cache", str(cache_dir), "--out", str(out), "--max-clips", "2",
                 "--slice-s", "0.8", "--context-s", "0.4", *extra]) == 0
    return {t: pd.read_csv(out / f"{t}.csv") for t in ("usage", "purity", "consistency", "stability")}


def _check_usage(tables, ids):
    u = tables["usage"]
    assert u["codebook"].tolist() == list(range(ids.shape[1]))
    assert u["codes_used"].tolist() == [len(np.unique(ids[:, k])) for k in range(ids.shape[1])]
    assert (u["frames"] == len(ids)).all()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["encodec", "dac", "mimi"])
def test_codec_codes_per_codebook(kind, corpus, tmp_path):
    """A random-init codec saved as a local checkpoint: its cache names the directory, and `tokens analyze`
    loads it back to re-encode (consistency, stability, decode + re-encode) with one row per codebook."""
    from workbench.cache import ActivationCache, build_cache
    from workbench.models import load
    from workbench.models.codec import save_random_codec

    sizes = {"encodec": dict(codebook_size=256, target_bandwidths=[1.5, 3.0]),  # 75 Hz x 8 bits: 5 codebooks
             "dac": dict(codebook_size=256, n_codebooks=4), "mimi": dict(codebook_size=256, num_quantizers=3)}
    model_dir = save_random_codec(kind, tmp_path / f"random-{kind}", **sizes[kind])
    with pytest.raises(FileExistsError, match="not empty"):
        save_random_codec(kind, model_dir)
    model = load(str(model_dir))
    cache = build_cache(model, corpus, ["quantizer.hook_codes"], tmp_path / "cache", verbose=False)
    ids = np.asarray(ActivationCache.open(cache.root).acts("quantizer.hook_codes")).astype(np.int64)
    n_books = {"encodec": 5, "dac": 4, "mimi": 3}[kind]
    assert ids.shape[1] == n_books
    assert all(len(np.unique(ids[:, k])) > 4 for k in range(n_books))  # random codebooks, but codes in use
    tables = _analyze_cli(cache.root, tmp_path / "an", "--reencode", "2", "--no-cochleagram")
    _check_usage(tables, ids)
    assert tables["purity"]["target"].tolist() == ["domain"] * n_books and tables["purity"]["purity"].ge(0.5).all()
    cons = tables["consistency"]
    assert cons["codebook"].tolist() == list(range(n_books)) and cons["consistency"].between(0, 1).all()
    stab = tables["stability"]
    assert set(stab["test"]) == {*robust.PERTURBATIONS, "reencode_1", "reencode_2"}
    assert (stab.groupby("test")["codebook"].apply(sorted).map(len) == n_books).all()
    # gain is a no-op for a source that sees level-normalised input only; nothing else is exact
    assert stab["match"].between(0, 1).all() and stab["ued"].ge(0).all()
    summary = json.loads((tmp_path / "an" / "summary.json").read_text())
    assert summary["codebooks"] == n_books and summary["source"] == str(model_dir)


@pytest.mark.slow
def test_cochlear_tokens(corpus, tmp_path):
    """AuriStream's tokens: analyze reads ``tokens.hook_ids`` among float hooks, re-encodes through the
    cochlear tokenizer, and each token's mean cochleagram is the mean of the cached cochleagram frames."""
    from probes.tokens.analyze import token_cochleagrams
    from workbench.cache import build_cache
    from workbench.models import load

    spec = "auristream-tiny?n_codes=32&n_layer=2&n_embd=32"
    caches = tmp_path / "caches"  # a workspace's caches/: the cochleagram cache beside the token cache is found
    cache = build_cache(load(spec), corpus, ["tokens.hook_ids"], caches / "tokens", verbose=False)
    coch = build_cache(load("cochleagram"), corpus, ["cochleagram.hook_out"], caches / "cochleagram", verbose=False)
    ids = np.asarray(cache.acts("tokens.hook_ids")).astype(np.int64).reshape(cache.n_frames("tokens.hook_ids"), -1)
    tables = _analyze_cli(cache.root, tmp_path / "an")  # the only integer hook: no --hook needed
    _check_usage(tables, ids)
    stab = tables["stability"].set_index("test")
    # the cochleagram is level-compressed (x^0.3) but not normalised: -6 dB changes some tokens, not all
    assert 0 < stab.loc["gain_-6dB", "match"] < 1
    assert tables["consistency"]["consistency"].iloc[0] > 0.5  # a 5-ms-context front end: mostly context-free
    summary = json.loads((tmp_path / "an" / "summary.json").read_text())
    assert summary["cochleagram_cache"] == str(coch.root.resolve())
    tc = dict(np.load(tmp_path / "an" / "token_cochleagrams.npz"))
    frames = coch.load("cochleagram.hook_out").astype(np.float64)  # both at 200 Hz, in the same clip order
    assert len(frames) == len(ids)
    for code, n, mean in zip(tc["codes"][:5], tc["counts"][:5], tc["mean"][:5]):
        rows = np.flatnonzero(ids[:, 0] == code)
        assert n == len(rows)
        np.testing.assert_allclose(mean, frames[rows].mean(0), rtol=1e-5, atol=1e-6)
    # a cache without the cochleagram is refused before any work
    from workbench.cli import main

    bad = ["tokens", "analyze", "--cache", str(cache.root), "--no-model", "--out", str(tmp_path / "bad")]
    assert main([*bad, "--cochleagram-cache", str(cache.root)]) != 0 and not (tmp_path / "bad").exists()
    # recomputed from the audio (no cochleagram cache) it is the same, up to the cache's fp16
    slow = token_cochleagrams(cache, "tokens.hook_ids", ids, cache.corpus, top=5)
    np.testing.assert_array_equal(slow["codes"], tc["codes"][:5])
    np.testing.assert_array_equal(slow["counts"], tc["counts"][:5])
    np.testing.assert_allclose(slow["mean"], tc["mean"][:5], atol=2e-3)
