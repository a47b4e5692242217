"""benchmarks/sae_corpus.py: the augmentations do what they say (SNR, cuts, speed) and never use held-out clips."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from workbench.audio import save_audio

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sae_corpus", ROOT / "benchmarks" / "sae_corpus.py")
sae_corpus = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sae_corpus)
SR = sae_corpus.SR


def test_mix_reaches_the_requested_snr():
    rng = np.random.default_rng(0)
    sig, bg = rng.standard_normal(SR * 3), 0.1 * rng.standard_normal(SR)  # background shorter: tiled
    for snr in (5.0, 20.0):
        noise = sae_corpus.mix(sig, bg, snr) - sig
        assert 10 * np.log10(np.mean(sig ** 2) / np.mean(noise ** 2)) == pytest.approx(snr, abs=0.05)


def test_segments_are_consecutive_and_in_bounds():
    rng = np.random.default_rng(1)
    n = SR * 65
    cuts = sae_corpus.segments(n, rng)
    assert len(cuts) >= 3
    assert all(b > a for a, b in cuts) and cuts[-1][1] <= n
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(cuts, cuts[1:]))
    assert all((b - a) / SR <= 28.0 + 1e-9 for a, b in cuts)


def test_speed_changes_duration_and_pitch():
    t = np.arange(SR) / SR
    fast = sae_corpus.speed(np.sin(2 * np.pi * 200 * t).astype(np.float32), 1.1)
    assert len(fast) == pytest.approx(SR / 1.1, rel=0.01)
    peak_hz = np.argmax(np.abs(np.fft.rfft(fast))) * SR / len(fast)
    assert peak_hz == pytest.approx(220, abs=3)


def test_build_skips_excluded_clips(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for cid, dom in [("keep", "speech"), ("held", "speech"), ("noise", "environment")]:
        save_audio(tmp_path / f"{cid}.flac", (0.3 * rng.standard_normal(SR * 10)).astype(np.float32), SR)
        rows.append({"id": cid, "path": f"{cid}.flac", "domain": dom})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "aug"
    summary = sae_corpus.build(str(tmp_path / "manifest.jsonl"), {"held"}, out, tts_clips=0, variants=2, seed=0)
    ids = [json.loads(line)["id"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert summary["clips"] == len(ids) > 0
    assert not any("held" in i for i in ids)
    assert any(i.startswith("aug_keep_v1") for i in ids) and any(i.startswith("aug_noise_v0") for i in ids)
    assert all((out / "audio" / f"{i}.flac").is_file() for i in ids)


def test_tts_sentences_never_come_from_held_out_transcripts(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for cid, text in [("train", "The red kite flew over the hill. It came back at noon today."),
                      ("held", "A zyxquor sentence from the test clip. Qwvplem may speak it aloud.")]:
        save_audio(tmp_path / f"{cid}.flac", (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
        rows.append({"id": cid, "path": f"{cid}.flac", "domain": "speech", "transcript": text})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from workbench.corpus import load_corpus

    pool = sae_corpus.sentence_pool(load_corpus(str(tmp_path / "manifest.jsonl")), {"held"})
    assert "The red kite flew over the hill." in pool
    assert not any("zyxquor" in s or "Qwvplem" in s for s in pool)
