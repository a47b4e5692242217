"""Small synthetic corpora for the neuro tests (imported by the other test_neuro_* modules), and
tests of the simulator and the naplib reader."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from workbench.audio import save_audio
from workbench.corpus.types import Clip, Corpus

SR = 16000


def make_corpus(root: Path, n_clips: int = 12, seconds: float = 8.0, seed: int = 0) -> Corpus:
    """Noise carriers under slow random envelopes (2-8 Hz): an informative, autocorrelated envelope."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n_clips):
        n = int(seconds * SR)
        env = gaussian_filter1d(rng.normal(size=n // 160), 3)  # 100 Hz control signal
        env = np.interp(np.arange(n) / 160, np.arange(len(env)), np.exp(env / env.std()))
        audio = (rng.normal(size=n) * env).astype(np.float32)
        audio *= 0.5 / np.abs(audio).max()
        rel = f"audio/clip{i:02d}.wav"
        save_audio(root / rel, audio, SR)
        clips.append(Clip(f"clip{i:02d}", rel, "speech", speaker=f"s{i % 3}", duration_s=n / SR))
    corpus = Corpus(clips, root=root)
    corpus.save(root / "manifest.jsonl")
    return corpus


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Corpus:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_simulated_recording_has_montage_annotations_and_planted_lag(small_corpus, tmp_path):
    import mne

    from neuro import acoustic
    from neuro.recording import read_recording
    from neuro.simulate import simulate_eeg
    from neuro.stimulus import clip_audio

    fif = simulate_eeg(small_corpus, tmp_path / "sub-x_eeg.fif", planted=("Cz",), lag_s=0.12, r=0.6, seed=1)
    raw = mne.io.read_raw_fif(fif, verbose="error")
    assert len(raw.ch_names) == 64 and raw.get_montage() is not None
    assert list(raw.annotations.description) == [c.id for c in small_corpus]
    assert raw.info["description"].startswith("simulated")
    rec = read_recording(fif, small_corpus)
    cz, fz = rec.ch_names.index("Cz"), rec.ch_names.index("Fz")
    # the planted channel follows the envelope 120 ms later; an unplanted one does not
    env = np.concatenate([acoustic.envelope(clip_audio(small_corpus, t.clip_id), SR, 100, n_out=len(t.data))[:, 0]
                          for t in rec.trials])
    y = np.concatenate([t.data for t in rec.trials])
    lags = np.arange(0, 30)
    r_cz = [np.corrcoef(np.roll(env, lag), y[:, cz])[0, 1] for lag in lags]
    assert abs(int(lags[np.argmax(r_cz)]) - 12) <= 1
    assert max(r_cz) > 0.4
    assert max(abs(np.corrcoef(np.roll(env, lag), y[:, fz])[0, 1]) for lag in lags) < 0.1


def test_simulate_rejects_unknown_channel(small_corpus, tmp_path):
    from neuro.simulate import simulate_eeg

    with pytest.raises(ValueError, match="XYZ"):
        simulate_eeg(small_corpus, tmp_path / "sub-x_eeg.fif", planted=("XYZ",))


@pytest.mark.skipif(importlib.util.find_spec("naplib") is None, reason="naplib not installed (make neuro-data)")
def test_naplib_sample_reads_and_exports(tmp_path):
    from neuro.naplib_sample import export_naplib_sample, naplib_sample
    from neuro.recording import read_recording
    from workbench.corpus import load_corpus

    sample = naplib_sample()
    assert len(sample.sounds) == 10 and sample.soundf == 11025 and sample.dataf == 100
    assert sample.responses[0].shape[1] == 10 and sample.ch_names[:2] == ["F7", "F3"]
    # sound and response cover the same seconds
    for snd, resp in zip(sample.sounds, sample.responses):
        assert abs(len(snd) / sample.soundf - len(resp) / sample.dataf) < 0.02
    assert sample.scripts[0].startswith("IT IS ME AGAIN")
    corpus_dir, fif = export_naplib_sample(tmp_path)
    rec = read_recording(fif, load_corpus(corpus_dir))
    assert rec.description == "naplib sample" and len(rec.trials) == 10
    np.testing.assert_allclose(rec.trials[3].data, sample.responses[3][: len(rec.trials[3].data)], atol=1e-5)
