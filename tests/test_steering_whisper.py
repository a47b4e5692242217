"""Steering a tiny random-init Whisper: a planted direction is found and removing it restores the
decoder's output; zero strength is bit-identical; fit -> artifact -> evaluate end to end."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sae.steer.selection import class_mean_direction, select_features
from workbench.features import FeatureDictionary
from workbench.models.whisper import random_whisper
from workbench.steering import Steering
from fake_saes import FakeTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
HOOK = "encoder.blocks.0.hook_resid_post"
SR = 16000


def noise(seed, seconds=1.0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    model = random_whisper(seed=0)
    model.max_new_tokens = 6
    return model


@pytest.fixture(scope="module")
def planted():
    u = np.random.default_rng(42).normal(size=64)
    return 3.0 * u / np.linalg.norm(u)


def plant_fn(u):
    t = torch.tensor(u, dtype=torch.float32)
    return lambda a: a + t


def test_planted_direction_is_found_and_removing_it_restores_the_decoder_output(tiny, planted):
    acts, y = [], []
    for i in range(16):
        is_ns = i % 2 == 0
        with tiny.hooks({HOOK: plant_fn(planted)} if is_ns else {}):
            a = tiny.run_with_cache(noise(i), [HOOK])[HOOK]
        acts.append(a.numpy())
        y += [is_ns] * len(a)
    X, y = np.concatenate(acts), np.array(y)
    found = class_mean_direction(X, y)
    u_hat = np.asarray(found["direction"])
    assert u_hat @ planted / (np.linalg.norm(u_hat) * np.linalg.norm(planted)) > 0.95
    assert found["auroc"] > 0.95

    clip = noise(100)
    dec = "decoder.ln_final.hook_normalized"  # the decoder's output states (random weights: tokens barely vary)
    plain = tiny.run_with_cache(clip, [dec])[dec]
    plain_ids = tiny.last_tokens[0]
    with tiny.hooks({HOOK: plant_fn(planted)}):
        spoiled = tiny.run_with_cache(clip, [dec])[dec]
        steering = Steering(model="random-whisper", hook=HOOK, d_model=64, method="direction", edit="subtract",
                            strength=1.0, direction=found["direction"])
        with steering.applied(tiny):  # registered after the plant: acts on the planted stream
            restored = tiny.run_with_cache(clip, [dec])[dec]
            restored_ids = tiny.last_tokens[0]
    assert (spoiled - plain).norm() / plain.norm() > 0.2
    assert torch.equal(restored_ids, plain_ids)
    assert (restored - plain).norm() / plain.norm() < 0.02


def test_planted_sae_feature_is_selected(tiny, planted, tmp_path):
    """An SAE with the planted direction as feature 5 among random ones: selection finds feature 5."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(64, 40, generator=g) / 8
    W[:, 5] = torch.tensor(planted / np.linalg.norm(planted), dtype=torch.float32)
    save_file({"W_enc": W, "b_enc": torch.zeros(40), "W_dec": W.T.contiguous(), "b_dec": torch.zeros(64),
               "threshold": torch.full((40,), 0.5)}, str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": 64, "d_sae": 40, "hook_name": HOOK}))
    fd = FeatureDictionary.load(tmp_path)
    acts, y, groups = [], [], []
    for i in range(24):
        with tiny.hooks({HOOK: plant_fn(planted)} if i % 2 else {}):
            a = tiny.run_with_cache(noise(200 + i), [HOOK])[HOOK].numpy()
        acts.append(a)
        y += [bool(i % 2)] * len(a)
        groups += [i] * len(a)
    sel = select_features(fd.encode_numpy(np.concatenate(acts)), np.array(y), np.array(groups), "clip",
                          n_permutations=100, seed=0)
    assert sel.selected[0] == 5


def test_zero_strength_and_no_features_are_bit_identical(tiny, tmp_path):
    clip = noise(7, 2.0)
    plain_ids, plain_enc = tiny.generate_ids(clip)[0], tiny.encoder_output(clip)
    W = torch.randn(64, 32, generator=torch.Generator().manual_seed(1))
    save_file({"W_enc": W, "b_enc": torch.zeros(32), "W_dec": W.T.contiguous(), "b_dec": torch.ones(64),
               "threshold": torch.zeros(32)}, str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": 64, "d_sae": 32, "hook_name": HOOK}))
    base = dict(model="random-whisper", hook=HOOK, d_model=64)
    sae = Steering(**base, method="sae", edit="scale", strength=4.0, sae=str(tmp_path),
                   features=[{"index": i} for i in range(8)])
    variants = [Steering(**base, method="direction", edit="project", strength=0.0, direction=[1.0] * 64),
                sae.with_(n_features=0), sae.with_(strength=1.0)]  # the last one runs the SAE: x + 0 = x
    for st in variants:
        with st.applied(tiny):
            assert torch.equal(tiny.generate_ids(clip)[0], plain_ids)
            assert torch.equal(tiny.encoder_output(clip), plain_enc)
    with sae.applied(tiny):
        assert not torch.equal(tiny.encoder_output(clip), plain_enc)


@pytest.mark.slow
def test_fit_and_evaluate_end_to_end(tiny, tmp_path, monkeypatch):
    """fit (direction and SAE) on a cache, dev sweep, artifact files, eval.json keys, refusals, corrupt clip."""
    from sae.steer.cli import register
    from sae.steer.fit import fit
    from workbench.audio import save_audio
    from workbench.cache import build_cache
    from workbench.corpus import Clip, Corpus
    import workbench.models

    tiny.tokenizer = FakeTokenizer()
    monkeypatch.setattr(workbench.models, "load", lambda spec, **kw: tiny)
    t = np.arange(SR) / SR
    clips = []
    for i in range(18):
        speech = i % 2 == 0
        x = (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype(np.float32) if speech else noise(300 + i)
        save_audio(tmp_path / "audio" / f"c{i}.flac", x, SR)
        clips.append(Clip(f"c{i}", f"audio/c{i}.flac", "speech" if speech else "environment",
                          transcript="w1 w2 w3" if speech else None, speaker=f"v{i}" if speech else None))
    (tmp_path / "audio" / "bad.flac").write_bytes(b"not audio at all")
    fit_c, dev_c = Corpus(clips[:8], root=tmp_path), Corpus(clips[8:14], root=tmp_path)
    eval_c = Corpus(clips[14:] + [clips[0], Clip("broken", "audio/bad.flac", "environment")], root=tmp_path)
    cache = build_cache(tiny, fit_c, [HOOK], tmp_path / "cache", verbose=False)

    st = fit(cache, method="direction", corpus=dev_c, model=tiny, out=tmp_path / "dir", strengths=[-1.0, 1.0],
             n_permutations=20, verbose=False)
    assert {p.name for p in (tmp_path / "dir").iterdir()} >= {"steering.json", "sweep.csv", "pareto.html"}
    saved = json.loads((tmp_path / "dir" / "steering.json").read_text())
    assert saved["method"] == "direction" and saved["model"] == "random-whisper" and saved["hook"] == HOOK
    assert set(saved["selection"]["clips"]) == {c.id for c in fit_c}
    assert set(saved["sweep"]["clips"]) == {c.id for c in dev_c}
    assert saved["sweep"]["rule"].startswith("lowest hallucination rate")
    assert Steering.load(tmp_path / "dir").to_dict() == st.to_dict()

    W = torch.randn(64, 48, generator=torch.Generator().manual_seed(3)) / 8
    save_file({"W_enc": W, "b_enc": torch.zeros(48), "W_dec": W.T.contiguous(), "b_dec": torch.zeros(64),
               "threshold": torch.full((48,), 0.05)}, str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": 64, "d_sae": 48, "hook_name": HOOK}))
    Corpus(clips[:14], root=tmp_path).save(tmp_path / "fitdev.jsonl")  # dev = what the fit split (cache) lacks
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["steer", "fit", "--cache", str(tmp_path / "cache"), "--sae", str(tmp_path),
                              "--corpus", str(tmp_path / "fitdev.jsonl"), "--out", str(tmp_path / "sae_st"),
                              "--n-features", "1,4", "--strengths", "4", "--permutations", "20", "--quiet"])
    assert args.func(args) == 0
    sae_st = Steering.load(tmp_path / "sae_st")
    assert sae_st.method == "sae" and (tmp_path / "sae_st" / "features.csv").is_file()
    assert sae_st.sweep["clips"] == [c.id for c in dev_c]

    eval_c.save(tmp_path / "eval.jsonl")
    args = parser.parse_args(["steer", "eval", "--steering", str(tmp_path / "sae_st"), "--also", str(tmp_path / "dir"),
                              "--corpus", str(tmp_path / "eval.jsonl"), "--out", str(tmp_path / "ev"),
                              "--bootstrap", "50", "--quiet"])
    assert args.func(args) == 0
    res = json.loads((tmp_path / "ev" / "eval.json").read_text())
    for key in ("baseline", "steered", "no_speech_gate", "vad_gate", "steered+no_speech_gate", "steered+vad_gate",
                "steered[dir]", "steered[dir]+vad_gate"):
        assert {"hallucination_rate", "hallucination_ci", "wer", "wer_ci"} <= set(res[key]), key
    assert res["excluded"] == ["c0"]  # a fit clip offered for evaluation is refused
    assert [s["id"] for s in res["skipped"]] == ["broken"]
    assert [c["id"] for c in res["clips"]] == ["c14", "c15", "c16", "c17"]
    assert {"id", "domain", "reference", "baseline", "steered"} <= set(res["clips"][0])
    assert res["baseline"]["n_nonspeech"] == 2 and res["baseline"]["n_speech"] == 2
    # per-condition and per-method rows (issue 27): what the app's Pareto plot reads
    assert set(res["by_condition"]) == {"speech", "nonspeech"}
    assert res["by_condition"]["speech"]["vad_gate"]["n_speech"] == 2
    assert res["by_condition"]["speech"]["baseline"]["hallucination_rate"] is None
    assert set(res["methods"]) == {"baseline", "steered", "steered[dir]"}
    assert res["methods"]["steered[dir]"]["path"] == str(tmp_path / "dir")
    rows = {(r["method"], r["gate"], r["clips"]): r for r in res["rows"]}
    assert rows[("steered[dir]", "vad_gate", "all")]["wer"] == res["steered[dir]+vad_gate"]["wer"]
    assert rows[("baseline", "no_speech_gate", "nonspeech")]["n_nonspeech"] == 2


def test_refused_fit_leaves_an_existing_artifact_untouched(tiny, tmp_path, monkeypatch, capsys):
    """Issue 22 case 7: a refused `steer fit` (no dev clips) neither changes an artifact nor leaves a lone
    features.csv in a new folder; an --out holding something else is refused before any work."""
    import hashlib

    from workbench.audio import save_audio
    from workbench.cache import build_cache
    from workbench.cli import main
    from workbench.corpus import Clip, Corpus
    import workbench.models

    tiny.tokenizer = FakeTokenizer()
    monkeypatch.setattr(workbench.models, "load", lambda spec, **kw: tiny)
    clips = []
    for i in range(4):
        save_audio(tmp_path / "audio" / f"c{i}.flac", noise(400 + i), SR)
        clips.append(Clip(f"c{i}", f"audio/c{i}.flac", "speech" if i % 2 else "environment",
                          transcript="w1 w2" if i % 2 else None))
    corpus = Corpus(clips, root=tmp_path)
    corpus.save(tmp_path / "fit.jsonl")
    build_cache(tiny, corpus, [HOOK], tmp_path / "cache", verbose=False)
    W = torch.randn(64, 48, generator=torch.Generator().manual_seed(3)) / 8
    save_file({"W_enc": W, "b_enc": torch.zeros(48), "W_dec": W.T.contiguous(), "b_dec": torch.zeros(64),
               "threshold": torch.full((48,), 0.05)}, str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": 64, "d_sae": 48, "hook_name": HOOK}))
    art = tmp_path / "art"
    Steering(model="random-whisper", hook=HOOK, d_model=64, method="sae", edit="scale", strength=2.0,
             features=[{"index": 1}], sae=str(tmp_path)).save(art)
    (art / "features.csv").write_text("feature,effect_size\n1,0.5\n")

    def digest(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    before = digest(art)
    argv = ["steer", "fit", "--cache", str(tmp_path / "cache"), "--sae", str(tmp_path), "--corpus",
            str(tmp_path / "fit.jsonl"), "--permutations", "10", "--quiet", "--out"]
    for out in (art, tmp_path / "new"):
        assert main(argv + [str(out)]) == 2
        assert "no dev clips" in capsys.readouterr().err
    assert digest(art) == before and not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp folder left
    other = tmp_path / "audio"  # a folder that is not a steering artifact
    assert main(argv + [str(other)]) == 2
    err = capsys.readouterr().err
    assert str(other) in err and "not a steering artifact" in err


def test_eval_reuses_plain_texts_for_an_identity_steering(tiny, tmp_path, monkeypatch):
    """An artifact that attaches nothing (the sweep chose N = 0) is not decoded again: its rows are plain
    decoding's, and a real edit beside it is still decoded under its own hooks."""
    import importlib

    from workbench.audio import save_audio
    from workbench.corpus import Clip, Corpus

    ev = importlib.import_module("sae.steer.evaluate")  # the module (sae.steer.evaluate is also its function)
    tiny.tokenizer = FakeTokenizer()
    clips = []
    for i in range(3):
        save_audio(tmp_path / f"n{i}.flac", noise(50 + i), SR)
        clips.append(Clip(f"n{i}", f"n{i}.flac", "environment"))
    u = np.random.default_rng(1).normal(size=64).tolist()
    same = Steering(model="random-whisper", hook=HOOK, d_model=64, method="direction", edit="add", strength=0.0,
                    direction=u, path=str(tmp_path / "same"))
    moved = same.with_(strength=20.0)
    moved.path = str(tmp_path / "moved")
    seen = []
    real = ev._transcripts
    monkeypatch.setattr(ev, "_transcripts", lambda m, a, st, sp: seen.append(st) or real(m, a, st, sp))
    res = ev.evaluate(same, Corpus(clips, root=tmp_path), model=tiny, also=[moved], vad=False, n_boot=20, verbose=False)
    assert seen == [None, moved]  # plain decoding and the real edit only
    assert [c["steered"] for c in res["clips"]] == [c["baseline"] for c in res["clips"]]
    assert [c["steered+no_speech_gate"] for c in res["clips"]] == [c["no_speech_gate"] for c in res["clips"]]
    plain = real(tiny, [ev.load_clips(Corpus(clips, root=tmp_path), SR, False)[1][0]], moved, None)[""]
    assert res["clips"][0]["steered[moved]"] == plain[0]
