"""``workbench probe`` on a real activation cache (random-init Whisper over espeak speech with exact phone
tiers): raw and SAE-code sweeps, ``--topk``, the report files, and when finished-hook checkpoints are
reused or invalidated."""
from __future__ import annotations

import importlib
import json

import pandas as pd
import pytest

from workbench.cli import main

HOOKS = ["encoder.blocks.0.hook_resid_post", "encoder.blocks.1.hook_resid_post"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from workbench.cache import build_cache
    from workbench.corpus.synth import synth_corpus
    from workbench.models.whisper import random_whisper

    root = tmp_path_factory.mktemp("probe_cli")
    corpus = synth_corpus(6, root / "corpus", seed=0, n_speakers=3, verbose=False)
    return build_cache(random_whisper(seed=0), corpus, HOOKS, root / "cache", verbose=False)


@pytest.fixture(scope="module")
def saes(cache, tmp_path_factory):
    from sae import TrainConfig, train

    out = tmp_path_factory.mktemp("saes")
    cfg = TrainConfig(expansion=2, k=8, tokens=256 * 20, batch_size=256, lr=3e-3, threads=1)
    train(cache, HOOKS, cfg, out=out, verbose=False)
    return out


def _probe(cache, out, *extra):
    return main(["probe", "--cache", str(cache.root), "--target", "phones", "--split", "speaker", "--folds", "3",
                 "--C", "1", "--out", str(out), *extra])


def _count_probe_folds(monkeypatch):
    sweep_mod = importlib.import_module("probes.sweep")
    real, calls = sweep_mod.probe_folds, []

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_mod, "probe_folds", counting)
    return calls


def test_raw_sweep_report_files_and_checkpoints(cache, tmp_path, monkeypatch, capsys):
    out = tmp_path / "raw"
    calls = _count_probe_folds(monkeypatch)
    assert _probe(cache, out) == 0
    assert len(calls) == 2  # one per hook
    printed = capsys.readouterr().out
    assert "best layer: encoder.blocks." in printed
    for name in ("summary.csv", "summary.json", "folds.csv", "layers.html", "confusion.csv", "confusion.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["hook"]) == HOOKS and (summary["folds"] == 3).all()
    labelled = cache.frames(HOOKS[0])["phones"].notna().sum()  # every labelled frame is a sample
    assert (summary["n_samples"] == labelled).all()
    folds = pd.read_csv(out / "folds.csv")
    assert len(folds) == 2 * 3 and (folds["shuffled_accuracy"] <= folds["shuffled_upper"]).all()
    doc = json.loads((out / "summary.json").read_text())
    assert doc["best_hook"] in HOOKS and doc["best_hook"] in printed
    conf = pd.read_csv(out / "confusion.csv", index_col=0)
    assert conf.to_numpy().sum() == labelled
    # the same settings again: both hooks come from their checkpoints
    assert _probe(cache, out) == 0 and len(calls) == 2
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), summary)
    # another probe setting (C) invalidates them; --no-resume ignores them
    assert _probe(cache, out, "--C", "0.1") == 0 and len(calls) == 4
    assert _probe(cache, out, "--C", "0.1", "--no-resume") == 0 and len(calls) == 6


def test_checkpoints_are_invalid_for_a_changed_cache(cache, tmp_path, monkeypatch):
    import shutil

    from workbench.cache import ActivationCache

    other = tmp_path / "cache_copy"
    shutil.copytree(cache.root, other)
    meta = json.loads((other / "cache.json").read_text())
    meta["corpus"]["fingerprint"] = "0" * 16  # same layout, other contents (as after a rebuild)
    (other / "cache.json").write_text(json.dumps(meta))
    calls = _count_probe_folds(monkeypatch)
    out = tmp_path / "p"
    quick = ["--hooks", HOOKS[0], "--max-frames", "300"]
    assert _probe(cache, out, *quick) == 0 and len(calls) == 1
    assert _probe(cache, out, *quick) == 0 and len(calls) == 1  # reused
    assert _probe(ActivationCache.open(other), out, *quick) == 0 and len(calls) == 2  # not reused


def test_sae_codes_and_topk(cache, saes, tmp_path, capsys):
    out = tmp_path / "sae"
    assert _probe(cache, out, "--sae", str(saes), "--topk", "1,4,16") == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["hook"]) == HOOKS
    folds = pd.read_csv(out / "folds.csv")
    assert (folds["d_features"] == 2 * 64).all()  # SAE codes (expansion 2 of d_model 64), not raw activations
    topk = pd.read_csv(out / "topk.csv")
    assert set(topk["k"]) == {1, 4, 16} and set(topk["hook"]) == set(HOOKS)
    assert (out / "topk.html").is_file()
    # --topk without --sae is refused with a clear error
    assert _probe(cache, tmp_path / "bad", "--topk", "1,4") == 2
    assert "--topk needs --sae" in capsys.readouterr().err
