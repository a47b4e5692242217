"""End to end on a real (tiny, random-init) Whisper: cache -> `workbench sae train` -> eval with the
spliced-in effect; live training from the model; and (when available) real whisper-tiny.en on
../shared/data with the WER change."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from sae import TrainConfig, train
from sae.cli import evaluate_sae
from sae.data import ModelSource
from sae.splice import spliced_effect
from workbench.cli import main
from workbench.corpus.types import Clip, Corpus, Segment

HOOK = "encoder.blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def tiny():
    from workbench.models.whisper import random_whisper

    return random_whisper(seed=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny):
    from workbench.cache import build_cache

    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    clips = []
    t = np.arange(32000) / 16000
    for i in range(8):
        if i % 2 == 0:  # "speech": modulated tones with two phone-like halves
            audio, dom = 0.3 * np.sin(2 * np.pi * (180 + 40 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t)), "speech"
        else:
            audio, dom = 0.2 * rng.standard_normal(len(t)), "music"
        sf.write(root / "audio" / f"c{i}.wav", audio.astype(np.float32), 16000)
        tiers = {"phones": [Segment(0, 1, "AA"), Segment(1, 2, "S")]} if dom == "speech" else {}
        clips.append(Clip(f"c{i}", f"audio/c{i}.wav", domain=dom, duration_s=2.0, tiers=tiers))
    return build_cache(tiny, Corpus(clips, root=root), "encoder.blocks.*.hook_resid_post", root / "cache", verbose=False)


@pytest.mark.slow
def test_cli_train_then_eval_with_splice(cache, tiny, tmp_path):
    """Measured on this fixture (k = 8): FVU 0.011, L0 7.4, dead 0.48; another seed 0.52 consistent;
    vowel-vs-consonant erasure baseline 1.0; splice error 0.065 at the hook, 0.075 at the output."""
    from sae import BatchTopKSAE, SAEConfig
    from sae.analyses import seed_consistency
    from sae.io import load_sae

    out = tmp_path / "saes"
    rc = main(["sae", "train", "--cache", str(cache.root), "--hook", "encoder.blocks.*.hook_resid_post",
               "--expansion", "4", "--k", "8", "--tokens", "40000", "--batch-size", "256", "--out", str(out),
               "--threads", "1", "--quiet"])
    assert rc == 0
    for h in cache.hooks:
        assert (out / h / "cfg.json").is_file() and (out / h / "sae_weights.safetensors").is_file()
        assert json.loads((out / h / "cfg.json").read_text())["metadata"]["model_name"] == "random-whisper"
    other = tmp_path / "seed1"  # the consistency analysis needs an independent run, not the SAE itself
    assert main(["sae", "train", "--cache", str(cache.root), "--hook", HOOK, "--expansion", "4", "--k", "8",
                 "--tokens", "40000", "--batch-size", "256", "--seed", "1", "--out", str(other), "--threads", "1",
                 "--quiet"]) == 0
    rc = main(["sae", "eval", "--sae", str(out), "--cache", str(cache.root), "--out", str(tmp_path / "eval"),
               "--compare", str(other), "--quiet"])
    assert rc == 0
    report = json.loads((tmp_path / "eval" / HOOK / "eval.json").read_text())
    m = report["metrics"]
    assert 0 <= m["fvu"] < 0.05 and 6 <= m["l0"] <= 10 and 0 <= m["dead_frac"] < 0.7, m
    assert set(report["domain_specialization"]["specialized_per_domain"]) == {"music", "speech"}
    # seed consistency against seed 1: neither the SAE itself (1.0) nor unrelated directions
    cons = report["seed_consistency"]
    assert cons["other"].startswith(str(other)) and cons["n_alive"] > 50
    X = torch.from_numpy(cache.load(HOOK))
    untrained = BatchTopKSAE(SAEConfig(d_in=64, expansion=4, k=8), torch.Generator().manual_seed(3))
    null = seed_consistency(load_sae(out / HOOK), untrained, X)
    print("seed consistency:", cons["fraction_consistent"], "vs an untrained SAE:", null["fraction_consistent"])
    assert null["fraction_consistent"] + 0.2 < cons["fraction_consistent"] < 0.95
    # concept erasure: the phone concept (AA vs S) is readable, needs a positive number of features,
    # and the curve ends at chance; every reported erasure is internally consistent
    vowel = report["concept_erasure_vowel"]
    assert vowel["baseline_accuracy"] > 0.9 and not vowel["baseline_at_chance"]
    assert 0 < vowel["features_needed"] <= vowel["n_alive"]
    curve = vowel["curve"]
    assert curve[0]["removed"] == 0 and curve[0]["balanced_accuracy"] == vowel["baseline_accuracy"]
    at = {c["removed"]: c["balanced_accuracy"] for c in curve}
    assert at[vowel["features_needed"]] <= vowel["chance_level"]
    assert all(a > vowel["chance_level"] for n, a in at.items() if n < vowel["features_needed"])
    for erasure in (report["concept_erasure"], vowel):
        assert erasure["fraction_needed"] == pytest.approx(erasure["features_needed"] / erasure["n_alive"])
        assert (erasure["features_needed"] == 0) == bool(erasure["baseline_at_chance"])
    feats = pd.read_parquet(tmp_path / "eval" / HOOK / "features.parquet")
    top = pd.read_parquet(tmp_path / "eval" / HOOK / "top_frames.parquet")
    assert len(feats) == 256 and {"share_speech", "share_music", "top_phones"} <= set(feats.columns)
    assert {"clip_id", "start_s", "activation"} <= set(top.columns)
    assert (tmp_path / "eval" / HOOK / "density.html").is_file()
    # spliced in: replacing the hook by the reconstruction changes the encoder output a little
    # (about as much as the reconstruction error), while an untrained SAE changes it wholesale
    res = evaluate_sae(out / HOOK, cache, tmp_path / "eval2", model=tiny, max_frames=2000, splice_clips=3, verbose=False)
    s = res["splice"]
    assert 0 < s["rel_error_hook"] < 0.2 and 0 < s["rel_error_output"] < 0.25, s
    audio = [a for a in corpus_audio(cache)][:3]
    broken = spliced_effect(tiny, untrained, HOOK, audio, mode="topk", verbose=False)
    assert broken["rel_error_output"] > 3 * s["rel_error_output"], (broken, s)


def corpus_audio(cache):
    from sae.splice import corpus_clips

    return corpus_clips(cache.corpus, 16000)[0]


def test_eval_refuses_sae_for_another_width(cache, tmp_path):
    from sae import BatchTopKSAE, SAEConfig, save_sae

    save_sae(BatchTopKSAE(SAEConfig(d_in=32, k=4, hook_name=HOOK)), tmp_path / "wrong")
    with pytest.raises(ValueError, match=r"d_in=32.*d_model=64"):
        evaluate_sae(tmp_path / "wrong", cache, tmp_path / "eval")


def test_splice_identity_sae_changes_nothing(tiny):
    """A 'perfect' reconstruction (an identity-like SAE) leaves the encoder output unchanged."""

    class Identity(torch.nn.Module):
        cfg = type("C", (), {"hook_name": HOOK})()

        def forward(self, x, mode=None):
            return x

    audio = [np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1]
    res = spliced_effect(tiny, Identity(), HOOK, audio, verbose=False)
    assert res["rel_error_hook"] == 0.0 and res["rel_error_output"] < 1e-6


def test_live_training_from_model(tiny):
    rng = np.random.default_rng(0)
    audio = [(0.2 * rng.standard_normal(16000)).astype(np.float32) for _ in range(6)]
    src = ModelSource(tiny, audio, [HOOK], batch_size=128, seed=0, buffer_batches=4)
    cfg = TrainConfig(expansion=2, k=4, tokens=128 * 6, batch_size=128, warmup_steps=1, threshold_start_step=2,
                      scale_estimate_frames=128, threads=1)
    sae = train(src, cfg=cfg, verbose=False)[HOOK]
    assert sae.d_in == 64 and float(sae.threshold) > 0
    assert sae.cfg.model_name == "random-whisper"


@pytest.mark.slow
def test_real_whisper_tiny_spliced_wer(shared_data, tiny_en_wheel):
    """Real weights on the JFK clip: an SAE trained on ~3k frames of block 2 (three speech clips)
    keeps the transcript (WER change small), while an untrained SAE wrecks it.

    In-sample on purpose: the JFK clip is one of the three training clips. ../shared/data holds
    too little speech for a held-out version: trained on the 3,856 frames of the other three
    speech clips the SAE leaves rel. error 0.41-0.45 at the hook and WER change 0.9-9.8 on JFK
    (measured this session), so this checks the splice machinery and a fitted SAE, not generalisation."""
    import workbench.models
    from workbench.audio import load_audio
    from sae import BatchTopKSAE, SAEConfig

    model = workbench.models.load("whisper-tiny.en")
    hook = "encoder.blocks.2.hook_resid_post"
    manifest = [json.loads(line) for line in (shared_data / "manifest.jsonl").read_text().splitlines()]
    speech = [m for m in manifest if m["domain"] == "speech" and m.get("transcript")][:3]
    audio = [load_audio(shared_data / m["path"], sr=16000) for m in speech]
    X = torch.cat([a[hook] for a in model.run_with_cache(audio, [hook])]).float()
    cfg = TrainConfig(expansion=4, k=32, tokens=512 * 60, batch_size=512, lr=2e-3, warmup_steps=5,
                      threshold_start_step=20, threshold_beta=0.9, threads=1)
    sae = train({hook: X}, cfg=cfg, verbose=False)[hook]
    text = [speech[0]["transcript"]]
    trained = spliced_effect(model, sae, hook, audio[:1], text, verbose=False)
    assert trained["wer_clean"] < 0.2 and trained["wer_change"] < 0.3, trained
    random = BatchTopKSAE(SAEConfig(d_in=384, expansion=4, k=32), torch.Generator().manual_seed(0))
    broken = spliced_effect(model, random, hook, audio[:1], text, mode="topk", verbose=False)
    assert broken["wer_change"] > 0.5 and broken["rel_error_output"] > 2 * trained["rel_error_output"]
