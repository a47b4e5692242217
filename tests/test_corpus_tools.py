"""``workbench corpus tts | augment | segment``: the tools that made the SAE training audio, as commands."""
from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.audio import load_audio, save_audio
from workbench.cli import main
from workbench.corpus import Clip, Corpus, Segment, load_corpus
from workbench.corpus.augment import augment_corpus, mix_at_snr, random_cuts, snr_db
from workbench.corpus.segment import cut_points

SR = 16000


def _tone(seconds, f=220.0, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
            ).astype(np.float32)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 5.0, 20.0])
def test_mix_at_snr_plants_the_snr(snr):
    rng = np.random.default_rng(1)
    speech, noise = rng.standard_normal(SR).astype(np.float32), rng.standard_normal(3000).astype(np.float32)
    mixed = mix_at_snr(speech, noise, snr)
    assert snr_db(speech, mixed - speech) == pytest.approx(snr, abs=1e-3)
    assert np.array_equal(mix_at_snr(speech, np.zeros(10), snr), speech)  # silent background: unchanged
    offset = mix_at_snr(speech, noise + 0.35, snr)  # a DC offset (as in a real whale recording) is not noise
    assert snr_db(speech, offset - speech) == pytest.approx(snr, abs=1e-3)
    assert abs(np.mean(offset - speech)) < 1e-6


def test_random_cuts_cover_without_overlap():
    cuts = random_cuts(60 * SR, np.random.default_rng(0))
    assert all(b > a for a, b in cuts) and all(c[1] == d[0] for c, d in zip(cuts, cuts[1:]))
    assert all(6 * SR <= b - a <= 28 * SR for a, b in cuts[:-1])


def _source(tmp_path):
    clips = []
    for i, (dom, sec) in enumerate((("speech", 20), ("speech", 9), ("music", 12), ("environment", 8))):
        save_audio(tmp_path / "src" / f"c{i}.flac", _tone(sec, 200 + 50 * i, i), SR)
        clips.append(Clip(f"c{i}", f"c{i}.flac", dom, speaker=f"s{i}", transcript="hello" if dom == "speech" else None))
    corpus = Corpus(clips, root=tmp_path / "src")
    corpus.save(tmp_path / "src" / "manifest.jsonl")
    return corpus


def test_augment_is_seeded_resumable_and_excludes(tmp_path):
    src = _source(tmp_path)
    a = augment_corpus([src], tmp_path / "a", passes=2, exclude={"c1"}, seed=3, verbose=False)
    assert {c.extra["source_id"] for c in a} == {"c0", "c2", "c3"}  # the excluded clip is never read
    assert all(c.transcript is None and not c.tiers for c in a)  # a cut can split a word
    assert {c.domain for c in a if c.extra["source_id"] == "c2"} == {"music"}
    first = load_audio(tmp_path / "a" / a[0].path, sr=SR)
    b = augment_corpus([src], tmp_path / "b", passes=2, exclude={"c1"}, seed=3, verbose=False)
    assert [c.to_dict() for c in a] == [c.to_dict() for c in b]
    assert np.array_equal(first, load_audio(tmp_path / "b" / b[0].path, sr=SR))
    (tmp_path / "a" / a[1].path).unlink()
    again = augment_corpus([src], tmp_path / "a", passes=2, exclude={"c1"}, seed=3, verbose=False)
    assert (tmp_path / "a" / a[1].path).is_file() and len(again) == len(a)
    mixed = [c for c in a if c.extra.get("aug_snr_db") is not None]
    assert mixed and all(5 <= c.extra["aug_snr_db"] <= 25 for c in mixed)


def test_cut_points_fall_between_words():
    words = [Segment(0.1 + i, 0.8 + i, f"w{i}") for i in range(20)]  # a word each second, gaps at .9
    cuts = cut_points(words, 20.0, 5.0)
    assert cuts[0][0] == 0 and cuts[-1][1] == 20.0
    for a, b in cuts[:-1]:
        assert not any(w.start_s < b < w.end_s for w in words)  # never inside a word
        assert 2.5 <= b - a <= 7.5
    assert cut_points(None, 10.0, 4.0) == [(0.0, 4.0), (4.0, 10.0)]


def test_segment_keeps_aligned_transcripts_and_tiers(tmp_path):
    save_audio(tmp_path / "long.flac", _tone(20), SR)
    words = [Segment(0.1 + i, 0.8 + i, f"w{i}") for i in range(20)]
    phones = [Segment(w.start_s, w.end_s, "AH") for w in words]
    src = Corpus([Clip("long", "long.flac", "speech", speaker="n", transcript=" ".join(w.label for w in words),
                       tiers={"words": words, "phones": phones}),
                  Clip("noise", "long.flac", "environment")], root=tmp_path)
    src.save(tmp_path / "manifest.jsonl")
    assert main(["corpus", "segment", str(tmp_path / "manifest.jsonl"), "--seconds", "5", "--out",
                 str(tmp_path / "seg"), "-q"]) == 0
    seg = load_corpus(tmp_path / "seg", fold_phones=False)
    speech = [c for c in seg if c.extra["source_id"] == "long"]
    assert " ".join(c.transcript for c in speech) == src[0].transcript  # every word once, in order
    for c in speech:
        assert c.tiers["words"][0].start_s >= 0 and c.tiers["words"][-1].end_s <= c.duration_s + 1e-6
        a = c.extra["segment_start_s"]
        assert c.tiers["words"][0].start_s + a == pytest.approx(words[int(c.tiers["words"][0].label[1:])].start_s)
        assert len(load_audio(tmp_path / "seg" / c.path, sr=SR)) == pytest.approx(c.duration_s * SR, abs=1)
    noise = [c for c in seg if c.extra["source_id"] == "noise"]
    assert len(noise) == 4 and all(c.transcript is None for c in noise)


def test_augment_cli(tmp_path, capsys):
    _source(tmp_path)
    (tmp_path / "held.txt").write_text("c0\nc3\n")
    assert main(["corpus", "augment", str(tmp_path / "src"), "--passes", "1", "--exclude", str(tmp_path / "held.txt"),
                 "--out", str(tmp_path / "aug"), "-q", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["domains"].keys() == {"speech", "music"}


@pytest.mark.slow
def test_tts_exact_text_aligned_and_excluded(tmp_path):
    from workbench.corpus.synth import SENTENCES
    from workbench.corpus.tts import tts_corpus

    pool = SENTENCES[:3]
    corpus = tts_corpus(2, tmp_path / "tts", seed=0, sentences=pool, exclude_text=[pool[0]], verbose=False)
    assert len(corpus) == 2
    for clip in corpus:
        assert pool[0] not in clip.transcript and clip.transcript.split(".")[0] in " ".join(pool)
        audio = load_audio(tmp_path / "tts" / clip.path, sr=SR)
        assert 0.5 < len(audio) / SR < 30 and float(np.abs(audio).max()) == pytest.approx(0.9, abs=0.01)
        assert "words" in clip.tiers and len(clip.tiers["words"]) >= 3  # aligned by pocketsphinx
    again = tts_corpus(2, tmp_path / "tts", seed=0, sentences=pool, exclude_text=[pool[0]], verbose=False, align=False)
    assert [c.transcript for c in again] == [c.transcript for c in corpus]


def _speech_and_noise(tmp_path):
    speech = []
    for i in range(4):
        save_audio(tmp_path / "sp" / f"u{i}.flac", 0.2 * _tone(2.0, 180 + 60 * i, i), SR)
        speech.append(Clip(f"u{i}", f"u{i}.flac", "speech", speaker=f"spk{i % 2}", transcript=f"word{i}",
                           tiers={"words": [Segment(0.2, 0.9, f"word{i}")]}))
    rng = np.random.default_rng(7)
    save_audio(tmp_path / "nz" / "n0.flac", (0.1 * rng.standard_normal(3 * SR)).astype(np.float32), SR)
    return Corpus(speech, root=tmp_path / "sp"), Corpus([Clip("n0", "n0.flac", "environment")], root=tmp_path / "nz")


@pytest.mark.parametrize("snr", [0.0, 5.0, 10.0])
def test_mix_plants_the_snr_and_keeps_the_clean_reference(tmp_path, snr):
    from workbench.corpus.mix import mix_corpus

    speech, noise = _speech_and_noise(tmp_path)
    mixed = mix_corpus(speech, tmp_path / "mix", [snr], noise=noise, verbose=False)
    conds = sorted({c.extra["condition"] for c in mixed})
    assert conds == ["clean", f"noise_{snr:g}db"]
    for c in mixed:
        if c.extra["condition"] == "clean":
            continue
        clean = load_audio(tmp_path / "mix" / c.extra["clean_path"], sr=SR)
        noisy = load_audio(tmp_path / "mix" / c.path, sr=SR)
        assert snr_db(clean, noisy - clean) == pytest.approx(snr, abs=0.05)  # FLAC (16-bit) rounding only
        orig = speech[[x.id for x in speech].index(c.extra["clean_id"])]
        assert c.transcript == orig.transcript and c.tiers == orig.tiers and c.extra["source_id"] == orig.id


def test_mix_two_speakers_never_mixes_a_speaker_with_itself(tmp_path):
    from workbench.corpus.mix import mix_corpus

    speech, _ = _speech_and_noise(tmp_path)
    mixed = mix_corpus(speech, tmp_path / "mix", [0.0], speakers=2, keep_clean=False, verbose=False)
    spk = {c.id: c.speaker for c in speech}
    assert len(mixed) == 4
    for c in mixed:
        assert c.extra["condition"] == "2spk_0db" and spk[c.extra["interferer_id"]] != c.speaker
        clean = load_audio(tmp_path / "mix" / c.extra["clean_path"], sr=SR)
        other = load_audio(c.extra["interferer_path"], sr=SR)
        mix = load_audio(tmp_path / "mix" / c.path, sr=SR)
        # a mixture of two known sources is separated trivially: mix - clean is the scaled interferer
        resid = mix - clean
        assert abs(np.corrcoef(resid, other[: len(resid)])[0, 1]) > 0.99


def test_mix_refuses_without_noise_or_second_speaker(tmp_path):
    from workbench.corpus.mix import mix_corpus

    speech, _ = _speech_and_noise(tmp_path)
    with pytest.raises(ValueError, match="--noise"):
        mix_corpus(speech, tmp_path / "m", [5.0], verbose=False)
    one = Corpus([c for c in speech if c.speaker == "spk0"], root=speech.root)
    with pytest.raises(ValueError, match="two different speakers"):
        mix_corpus(one, tmp_path / "m2", [5.0], speakers=2, verbose=False)


def test_mix_cli_with_reverb(tmp_path, capsys):
    speech, noise = _speech_and_noise(tmp_path)
    speech.save(tmp_path / "sp" / "manifest.jsonl")
    noise.save(tmp_path / "nz" / "manifest.jsonl")
    assert main(["corpus", "mix", "--speech", str(tmp_path / "sp"), "--noise", str(tmp_path / "nz"), "--snr", "5",
                 "--reverb", "0.3", "--out", str(tmp_path / "mix"), "-q"]) == 0
    assert "reverb0.3_noise_5db 4" in capsys.readouterr().out
