"""Each `workbench demo` step on its own, on a tiny workspace (a few clips, a few thousand SAE frames):
a test runs its step and the steps it needs (``run_steps(only=...)`` skips those already complete,
so in file order each test adds one step; run alone, a test builds what it needs first) and checks
that step's outputs load with the public types. The end-to-end ``--quick`` run stays in test_demo.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apps.demo.runner import read_workspace, run_steps
from apps.demo.steps import LAST_HOOK, MIDDLE_HOOK, MODEL, DemoSettings, demo_steps
from workbench.corpus import load_corpus

TINY = {"speech": 6, "speakers": 3, "nonspeech": 3, "dev_speech": 2, "dev_nonspeech": 2, "heldout_speech": 2,
        "heldout_speakers": 2, "heldout_nonspeech": 2, "sae_tokens": 8192, "sae_batch": 256, "splice_clips": 1,
        "sae_hooks": 2, "eval_frames": 1000, "folds": 2, "probe_frames": 1500, "steer_strengths": "0.5", "steer_fit_clips": 4, "steer_steps": 3,
        "neuro_draws": 10, "neuro_folds": 3, "neuro_sae_features": 4, "neuro_components": 4, "audiobook_dev": 1}


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo_steps")


def _run(ws: Path, name: str) -> dict:
    """Run step ``name`` and, first, the steps it needs; returns the workspace record."""
    steps = {s.name: s for s in demo_steps(DemoSettings(quick=True, shared_data=None, app=False, size_overrides=TINY))}
    want, todo = [], [name]
    while todo:
        n = todo.pop()
        if n not in want:
            want.append(n)
            todo += steps[n].needs
    res = run_steps(list(steps.values()), ws, only=want, log=lambda msg: None)
    assert {r.name: r.status for r in res}[name] in ("done", "skipped")
    record = read_workspace(ws)
    assert record["steps"][name]["status"] == "done"
    return record


def _corpora(ws: Path) -> dict:
    from workbench.corpus import load_corpus

    return {n: load_corpus(ws / "corpora" / n) for n in ("speech", "nonspeech", "demo", "dev", "heldout")}


def test_sizes_are_checked():
    with pytest.raises(ValueError, match="unknown demo sizes.*'speach'"):
        _ = DemoSettings(size_overrides={"speach": 3}).sizes


@pytest.mark.slow
def test_corpus_steps(ws):
    record = _run(ws, "evalsets")  # and the corpus step it needs
    corpora = _corpora(ws)
    assert sorted(p.name for p in (ws / "corpora").iterdir()) == ["audiobook", "demo", "dev", "heldout", "nonspeech",
                                                                  "sae_holdout.txt", "speech"]
    assert sorted(p.name for p in (ws / "corpora" / "audiobook").iterdir()) == ["dev", "heldout", "source", "steer",
                                                                                "train"]
    assert len(corpora["speech"]) == TINY["speech"] and len(corpora["speech"].summary()["speakers"]) == 3
    assert set(corpora["demo"].summary()["domains"]) >= {"speech"} and len(corpora["demo"].summary()["domains"]) >= 2
    fit, dev, held = ({c.id for c in corpora[n]} for n in ("demo", "dev", "heldout"))
    assert not fit & held and not dev & (fit | held)  # ids of their own
    # real speech: naplib's excerpts, each excerpt's segments in one part only (SAE train / SAE held out / steering)
    book = {n: load_corpus(ws / "corpora" / "audiobook" / n) for n in ("train", "heldout", "dev", "steer")}
    sources = {n: {c.extra["source_id"] for c in b} for n, b in book.items()}
    assert all(sources.values()) and not sources["train"] & sources["heldout"]
    assert not (sources["train"] | sources["heldout"]) & (sources["steer"] | sources["dev"])
    assert not sources["dev"] & sources["steer"] and {c.id for c in book["dev"]} <= dev  # real dev speech
    # training excerpts stay whole (52-62 s, no word timings needed); the held-out and steering ones are aligned segments
    assert all(c.transcript for b in book.values() for c in b)
    assert all(c.tiers.get("words") for n in ("heldout", "dev", "steer") for c in book[n])
    import soundfile as sf

    assert all(sf.info(book["train"].audio_path(c)).duration > 30 and c.extra["source_id"] == c.id
               for c in book["train"])
    holdout = set((ws / "corpora" / "sae_holdout.txt").read_text().split())
    assert holdout == {c.id for c in book["heldout"]} and holdout <= fit and not holdout & {c.id for c in book["train"]}
    assert {c.id for c in book["steer"]} <= held and not {c.id for c in book["steer"]} & fit
    assert "corpus nonspeech" in record["parts"]["corpora/dev"]["command"]


@pytest.mark.slow
@pytest.mark.real_weights
def test_caches_step(ws, tiny_en_wheel):
    from workbench.cache import ActivationCache

    _run(ws, "caches")
    whisper = ActivationCache.open(ws / "caches" / MODEL)
    assert {f"encoder.blocks.{i}.hook_resid_post" for i in range(4)} <= set(whisper.hooks)
    assert sorted(whisper.clip_ids) == sorted(c.id for c in _corpora(ws)["demo"]) and whisper.meta["complete"]
    tokens = ActivationCache.open(ws / "caches" / "auristream-tiny")
    coch = ActivationCache.open(ws / "caches" / "cochleagram")
    assert tokens.hook_dtype("tokens.hook_ids") == "int32" and coch.d_model("cochleagram.hook_out") == 211


@pytest.mark.slow
@pytest.mark.real_weights
def test_sae_step(ws, tiny_en_wheel):
    from workbench.features import FeatureDictionary

    record = _run(ws, "sae")
    for hook in (LAST_HOOK, MIDDLE_HOOK):
        fd = FeatureDictionary.load(ws / "saes" / MODEL / hook)
        assert fd.hook_name == hook and fd.d_in == 384
        ev = json.loads((ws / "saes" / MODEL / "eval" / hook / "eval.json").read_text())
        # a few hundred frames and 32 steps: FVU is measured, not good (the --quick run checks FVU < 1)
        assert np.isfinite(ev["metrics"]["fvu"]) and ev["metrics"]["fvu"] >= 0 and "splice" in ev
        assert len(pd.read_parquet(ws / "saes" / MODEL / "eval" / hook / "features.parquet")) == fd.d_sae
        assert record["parts"][f"saes/{MODEL}/{hook}"]["step"] == "sae"


@pytest.mark.slow
@pytest.mark.real_weights
def test_probes_step(ws, tiny_en_wheel):
    from workbench.cache import ActivationCache

    _run(ws, "probes")
    summary = pd.read_csv(ws / "probes" / "phones" / "summary.csv")
    assert len(summary) == len(ActivationCache.open(ws / "caches" / MODEL).hooks)
    assert (summary["accuracy"] > summary["majority"]).any()  # a few clips: phones decodable from some layer


@pytest.mark.slow
@pytest.mark.real_weights
def test_steering_step(ws, tiny_en_wheel):
    _run(ws, "steering")
    steer = json.loads((ws / "steering" / "nonspeech" / "steering.json").read_text())
    ev = json.loads((ws / "steering" / "nonspeech" / "eval" / "eval.json").read_text())
    assert steer["hook"] == LAST_HOOK
    assert {"baseline", "steered", "no_speech_gate", "vad_gate", "clips"} <= set(ev)
    assert {c["id"] for c in ev["clips"]} <= {c.id for c in _corpora(ws)["heldout"]}


@pytest.mark.slow
@pytest.mark.real_weights
def test_neuro_step(ws, tiny_en_wheel):
    _run(ws, "neuro")
    table = pd.read_csv(ws / "neuro" / "simulated" / "summary.csv")
    assert {"feature", "channel", "r", "p_fdr"} <= set(table.columns) and np.isfinite(table["r"]).all()
