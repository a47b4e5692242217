"""espeak-ng synthetic speech: exact event timings, speakers, corpus writing; synthetic non-speech."""
from __future__ import annotations

import numpy as np
import pytest

from workbench.audio import load_audio
from workbench.corpus import PHONES_39, SILENCE, load_corpus
from workbench.corpus.nonspeech import KINDS, click_train, coloured_noise, synth_nonspeech, tone
from workbench.corpus.synth import (SENTENCES, _PAUSE_MNEMONICS, make_speakers, synth_corpus, synthesize,
                                    text_to_phonemes)

VOICES = ["en-us+m1", "en+f2", "en-gb-x-rp+m4", "en-029+f1"]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth_corpus(12, out, seed=3, n_speakers=4, verbose=False)
    return out


@pytest.mark.parametrize("voice", VOICES)
def test_phoneme_events_monotonic_inside_audio_and_match_phoneme_string(voice):
    for text in SENTENCES[:10]:
        r = synthesize(text, voice)
        duration = len(r.audio) / r.sample_rate
        times = [t for _, t, _, _ in r.events]
        assert times == sorted(times), "events must be in time order"
        assert all(0.0 <= t <= duration for t in times)
        spoken = [m for m, _, _, _ in r.events if m != "#word" and m not in _PAUSE_MNEMONICS]
        expected = [m for m in text_to_phonemes(text, voice) if m not in _PAUSE_MNEMONICS]
        assert len(spoken) == len(expected) and spoken == expected
        assert not r.unknown_phones, f"unmapped espeak phonemes {r.unknown_phones}"


def test_tiers_cover_clip_and_words_follow_the_text():
    text = "Please bring three green apples from the kitchen."
    r = synthesize(text, "en-us+m3", pitch=40, rate=160, sr=16000)
    duration = len(r.audio) / r.sample_rate
    ph = r.phones
    assert ph[0].start_s == 0.0 and abs(ph[-1].end_s - duration) < 1e-3
    assert all(abs(a.end_s - b.start_s) < 1e-9 for a, b in zip(ph, ph[1:])), "phone tier is contiguous"
    assert {s.label for s in ph} <= PHONES_39
    assert [w.label for w in r.words] == ["please", "bring", "three", "green", "apples", "from", "the", "kitchen"]
    for w in r.words:  # every word holds at least one real phone and ends on a phone boundary
        inside = [s for s in ph if s.start_s >= w.start_s - 1e-9 and s.end_s <= w.end_s + 1e-9]
        assert any(s.label != SILENCE for s in inside)
        assert any(abs(s.end_s - w.end_s) < 1e-9 for s in ph)


def test_timings_line_up_with_the_audio():
    """Ground truth: silence segments are quiet, vowels loud, /s/ and /sh/ bright (high spectral centroid)."""
    energy = {"sil": [], "vowel": []}
    centroid = {"fric": [], "vowel": []}
    vowels = {"AA", "AE", "AH", "EH", "IH", "IY", "OW", "UW", "EY", "AY", "AW", "ER"}
    for i, text in enumerate(SENTENCES[:8]):
        r = synthesize(text, VOICES[i % len(VOICES)], sr=16000)
        for s in r.phones:
            seg = r.audio[int(s.start_s * 16000): int(s.end_s * 16000)]
            if len(seg) < 320:
                continue
            rms = float(np.sqrt(np.mean(seg ** 2)))
            spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
            c = float((spec * np.fft.rfftfreq(len(seg), 1 / 16000)).sum() / (spec.sum() + 1e-12))
            if s.label == SILENCE:
                energy["sil"].append(rms)
            elif s.label in vowels:
                energy["vowel"].append(rms)
                centroid["vowel"].append(c)
            elif s.label in ("S", "SH"):
                centroid["fric"].append(c)
    assert np.median(energy["vowel"]) > 20 * np.median(energy["sil"])  # ~1000x; a 30 ms shift gives ~4x
    assert np.median(centroid["fric"]) > 2 * np.median(centroid["vowel"])


def test_voices_differ_and_same_voice_repeats():
    text = SENTENCES[5]
    r1, r2 = synthesize(text, "en-us+m1"), synthesize(text, "en-us+m1")
    # espeak keeps generator state between calls: same phones, timings within a few ms
    assert [e[0] for e in r1.events] == [e[0] for e in r2.events]
    assert max(abs(x[1] - y[1]) for x, y in zip(r1.events, r2.events)) < 0.005
    a1 = r1.audio
    b = synthesize(text, "en-us+f3").audio
    n = min(len(a1), len(b))
    assert len(a1) != len(b) or not np.allclose(a1[:n], b[:n], atol=1e-3)

    def spectrum(x):
        s = np.abs(np.fft.rfft(x[: 16384] * np.hanning(16384)))
        return s / np.linalg.norm(s)

    assert float(spectrum(a1) @ spectrum(b)) < 0.9  # different voices, not just a different phase
    slow, fast = synthesize(text, "en-us+m1", rate=120), synthesize(text, "en-us+m1", rate=240)
    assert len(slow.audio) > 1.5 * len(fast.audio)


def test_speakers_are_distinct_and_reproducible():
    s = make_speakers(12, seed=0)
    assert len({x.id for x in s}) == 12 and s == make_speakers(12, seed=0)
    assert make_speakers(12, seed=1) != s
    with pytest.raises(ValueError):
        make_speakers(0)


def test_synth_corpus_writes_manifest_and_reloads(synth_dir):
    corpus = load_corpus(synth_dir)
    assert len(corpus) == 12
    summary = corpus.summary()
    assert len(summary["speakers"]) == 4 and summary["tiers"] == ["phones", "words"]
    assert set(summary["phone_inventory"]) <= PHONES_39
    for clip in corpus:
        audio = load_audio(corpus.audio_path(clip), sr=None)
        assert len(audio) == pytest.approx(clip.duration_s * 16000, abs=1)
        assert clip.tiers["phones"][-1].end_s == pytest.approx(clip.duration_s, abs=1e-3)
        assert clip.extra["source"] == "espeak-ng" and clip.transcript in SENTENCES


def test_label_at_on_synthetic_clips(synth_dir):
    corpus = load_corpus(synth_dir)
    for clip in list(corpus)[:4]:
        for tier in ("phones", "words"):
            for seg in clip.tiers[tier]:
                mid = (seg.start_s + seg.end_s) / 2
                assert clip.label_at(tier, mid) == seg.label
        assert clip.label_at("phones", clip.duration_s + 1.0) is None
        assert clip.label_at("phones", 0.0) == clip.tiers["phones"][0].label
        first = clip.tiers["words"][0]
        times = [first.start_s, (first.start_s + first.end_s) / 2, clip.duration_s + 5]
        assert clip.labels_at("words", times) == [first.label, first.label, None]
        assert clip.label_at("no_such_tier", 0.5) is None


def test_synth_corpus_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        synth_corpus(0, tmp_path)
    with pytest.raises(ValueError, match="fmt"):
        synth_corpus(1, tmp_path, fmt="mp4")
    with pytest.raises(ValueError, match="voice"):
        synthesize("hello", "xx-nope")


# --- non-speech ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("colour,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_coloured_noise_has_the_planted_spectral_slope(colour, slope):
    x = coloured_noise(2 ** 16, 16000, colour, np.random.default_rng(0))
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    band = (f > 50) & (f < 6000)
    fitted = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
    assert abs(fitted - slope) < 0.15
    assert np.abs(x).max() == pytest.approx(0.5, abs=1e-6)


def test_tone_and_clicks_are_what_was_asked():
    x = tone(16000, 16000, 440.0)
    spec = np.abs(np.fft.rfft(x))
    assert np.fft.rfftfreq(16000, 1 / 16000)[spec.argmax()] == pytest.approx(440.0, abs=1.0)
    c = click_train(16000, 16000, rate_hz=5.0)
    onsets = np.flatnonzero(np.diff(np.r_[0.0, c]) > 0)
    assert len(onsets) == 5


def test_synth_nonspeech_corpus(tmp_path):
    corpus = synth_nonspeech(12, tmp_path, seed=0, duration_s=0.5)
    reloaded = load_corpus(tmp_path)
    assert [c.id for c in reloaded] == [c.id for c in corpus]
    assert reloaded.summary()["domains"] == {"environment": 8, "music": 4}
    assert {c.extra["kind"] for c in reloaded} == set(KINDS)
    for clip in reloaded:
        assert not clip.tiers and clip.label_at("phones", 0.1) is None
        assert load_audio(reloaded.audio_path(clip)).shape == (8000,)
