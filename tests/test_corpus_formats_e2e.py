"""A user with LibriSpeech and ESC-50 folders builds one corpus with one command and runs cache, probes,
an SAE and steering on it (tiny random-init Whisper standing in for the hub model)."""
from __future__ import annotations

import json

import corpus_layouts as L
from fake_saes import FakeTokenizer
import pytest

from workbench.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
HOOK = "encoder.blocks.0.hook_resid_post"


def test_librispeech_plus_esc50_through_cache_probe_sae_steer(tmp_path, monkeypatch):
    import workbench.models
    from workbench.models.whisper import random_whisper

    model = random_whisper(seed=0)
    model.max_new_tokens = 4
    model.tokenizer = FakeTokenizer()
    monkeypatch.setattr(workbench.models, "load", lambda spec, **kw: model)

    ls, esc = L.librispeech(tmp_path / "LibriSpeech"), L.esc50(tmp_path / "ESC-50", n=12)
    corpus = tmp_path / "corpus"
    assert main(["corpus", "build", str(ls), str(esc), "--out", str(corpus), "-q"]) == 0
    rows = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 18 and {r["domain"] for r in rows} == {"speech", "dog", "rooster", "rain", "crying_baby"}

    from workbench.corpus import load_corpus

    # the fit split: 12 of the 18 clips (steer fit sweeps on the other 6); a finished cache of its own,
    # since a `--max-clips` cache of the whole corpus counts as incomplete and analyses refuse it
    built = load_corpus(corpus)
    fit = type(built)(list(built)[:12], root=built.root)
    fit.save(tmp_path / "fit.jsonl")
    cache = tmp_path / "cache"
    assert main(["cache", "--model", "random", "--corpus", str(tmp_path / "fit.jsonl"), "--hooks", HOOK, "--out",
                 str(cache), "--quiet"]) == 0
    from workbench.cache import ActivationCache

    frames = ActivationCache.open(cache).frames()  # the ESC-50 labels, folds and sources are columns analyses can use
    assert {"label", "fold", "source_id", "chapter"} <= set(frames.columns)
    assert set(frames.loc[frames.domain == "dog", "label"]) == {"dog"}

    assert main(["probe", "--cache", str(cache), "--target", "domain", "--split", "clip", "--folds", "2",
                 "--out", str(tmp_path / "probe")]) == 0
    assert main(["sae", "train", "--cache", str(cache), "--hook", HOOK, "--expansion", "2", "--k", "4",
                 "--tokens", "2000", "--batch-size", "16", "--out", str(tmp_path / "saes")]) == 0
    assert main(["steer", "fit", "--cache", str(cache), "--concept", "nonspeech", "--method", "direction",
                 "--corpus", str(corpus), "--out", str(tmp_path / "steer"), "--strengths", "1",
                 "--permutations", "20", "--max-wer-increase", "1", "--quiet"]) == 0
    steering = json.loads((tmp_path / "steer" / "steering.json").read_text())
    assert steering["hook"] == HOOK and len(steering["sweep"]["clips"]) == 6
