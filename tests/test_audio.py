"""workbench.audio: resampling, chunked reading, atomic saving and one clear error per bad input."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import soundfile as sf

from workbench.audio import AudioLoadError, audio_info, check_audio, iter_audio_chunks, load_audio, save_audio


def _sine(sr: int, seconds: float, freq: float, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def _peak_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


@pytest.mark.parametrize("sr_in", [8000, 22050, 44100, 48000])
def test_resampling_keeps_duration_and_frequency(tmp_path, sr_in):
    path = tmp_path / "tone.wav"
    sf.write(path, _sine(sr_in, 1.5, 1000.0), sr_in, subtype="FLOAT")
    x = load_audio(path, sr=16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 24000) <= 1
    assert abs(_peak_freq(x, 16000) - 1000.0) < 2.0
    assert 0.45 < np.abs(x[1000:-1000]).max() < 0.55  # polyphase filter keeps the passband level


def test_resampling_removes_content_above_new_nyquist(tmp_path):
    """A 7 kHz tone at 44.1 kHz must vanish at 8 kHz (Nyquist 4 kHz): a proper anti-alias filter."""
    path = tmp_path / "hi.wav"
    sf.write(path, _sine(44100, 1.0, 7000.0), 44100, subtype="FLOAT")
    x = load_audio(path, sr=8000)
    assert np.abs(x[200:-200]).max() < 0.01


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = _sine(16000, 0.5, 300.0), _sine(16000, 0.5, 700.0)
    path = tmp_path / "st.flac"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="PCM_24")
    x = load_audio(path, sr=16000)
    np.testing.assert_allclose(x, (left + right) / 2, atol=1e-5)


def test_offset_and_duration_read_a_window(tmp_path):
    sig = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 3).astype(np.float32)
    path = tmp_path / "n.wav"
    sf.write(path, sig, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, sr=None, offset_s=1.0, duration_s=0.5), sig[16000:24000])
    with pytest.raises(AudioLoadError, match="past the end"):
        load_audio(path, offset_s=5.0)


@pytest.mark.parametrize("sr_in,sr_out,chunk_s", [(44100, 16000, 0.37), (22050, 16000, 0.7), (16000, 16000, 0.3),
                                                  (8000, 16000, 0.45)])
def test_chunks_concatenate_to_the_whole_file(tmp_path, sr_in, sr_out, chunk_s):
    sig = np.random.default_rng(1).uniform(-0.5, 0.5, int(sr_in * 2.3)).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, sig, sr_in, subtype="FLOAT")
    chunks = list(iter_audio_chunks(path, chunk_s=chunk_s, sr=sr_out))
    assert len(chunks) > 3
    whole = load_audio(path, sr=sr_out)
    joined = np.concatenate(chunks)
    assert joined.shape == whole.shape
    np.testing.assert_allclose(joined, whole, atol=1e-5)


@pytest.mark.parametrize("ext,subtype", [(".wav", "PCM_16"), (".flac", None), (".ogg", None)])
def test_save_audio_roundtrip_and_atomic(tmp_path, ext, subtype):
    x = _sine(16000, 0.5, 440.0)
    out = save_audio(tmp_path / f"sub/clip{ext}", x, 16000, subtype=subtype)
    assert out.is_file() and os.listdir(out.parent) == [out.name]  # no temp file left behind
    y = load_audio(out, sr=16000)
    assert y.shape == x.shape
    tol = 0.05 if ext == ".ogg" else 1e-3  # vorbis is lossy
    assert np.abs(y - x).max() < tol
    assert audio_info(out)[0] == 16000


def test_save_audio_refuses_nan_and_keeps_old_file(tmp_path):
    path = save_audio(tmp_path / "a.wav", _sine(16000, 0.1, 440.0), 16000)
    before = path.read_bytes()
    bad = _sine(16000, 0.1, 440.0)
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        save_audio(path, bad, 16000)
    assert path.read_bytes() == before


def test_mp3_loads_or_fails_clearly(tmp_path):
    path = tmp_path / "a.mp3"
    if "MP3" not in sf.available_formats():
        path.write_bytes(b"ID3" + bytes(200))
        with pytest.raises(AudioLoadError, match="mp3"):
            load_audio(path)
        return
    sf.write(path, _sine(44100, 1.0, 500.0), 44100, format="MP3")
    x = load_audio(path, sr=16000)
    assert abs(len(x) / 16000 - 1.0) < 0.1  # mp3 adds encoder padding
    assert abs(_peak_freq(x, 16000) - 500.0) < 5.0


# --- bad input: one AudioLoadError naming the file and the problem --------------------------------------
def _make_bad(tmp_path, kind):
    p = tmp_path / f"bad_{kind}.wav"
    if kind == "missing":
        return p, "not found"
    if kind == "directory":
        p = tmp_path / "a_folder.wav"
        p.mkdir()
        return p, "directory"
    if kind == "empty":
        p.write_bytes(b"")
        return p, "0 bytes"
    if kind == "text":
        p = tmp_path / "notes.flac"
        p.write_text("this is a transcript, not audio\n" * 20)
        return p, "text file"
    if kind == "corrupt":
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return p, "corrupt"
    if kind == "truncated_flac":
        good = tmp_path / "good.flac"
        sf.write(good, _sine(16000, 1.0, 440.0), 16000)
        p = tmp_path / "bad_truncated.flac"
        p.write_bytes(good.read_bytes()[:30])  # header cut mid-way
        return p, "corrupt"
    if kind == "truncated_data":
        good = tmp_path / "good.flac"
        sf.write(good, _sine(16000, 2.0, 440.0), 16000)
        p = tmp_path / "bad_half.flac"
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # header intact, frames missing
        return p, "corrupt"
    if kind == "zero_frames":
        sf.write(p, np.zeros(0, np.float32), 16000)
        return p, "zero-length"
    if kind in ("nan", "inf"):
        x = _sine(16000, 0.2, 440.0)
        x[100:110] = np.nan if kind == "nan" else np.inf
        sf.write(p, x, 16000, subtype="FLOAT")
        return p, "NaN/inf"
    raise AssertionError(kind)


BAD_KINDS = ["missing", "directory", "empty", "text", "corrupt", "truncated_flac", "truncated_data", "zero_frames",
             "nan", "inf"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_raises_one_clear_error(tmp_path, kind):
    path, problem = _make_bad(tmp_path, kind)
    for reader in (lambda: load_audio(path), lambda: check_audio(path), lambda: list(iter_audio_chunks(path, 0.05))):
        with pytest.raises(AudioLoadError) as err:
            reader()
        assert str(path) in str(err.value) and problem in str(err.value)
        assert isinstance(err.value, ValueError) and err.value.path == str(path)


def test_silent_audio_warns_naming_the_file(tmp_path):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    with pytest.warns(UserWarning, match="quiet.wav.*silent"):
        x = load_audio(path)
    assert x.shape == (16000,)
    with pytest.warns(UserWarning, match="silent"):
        check_audio(path)
    loud = tmp_path / "loud.wav"
    sf.write(loud, _sine(16000, 0.5, 440.0), 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a normal file must not warn
        load_audio(loud)
