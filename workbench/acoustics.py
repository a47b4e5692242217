"""Per-frame acoustic descriptors at a model's frame times: loudness, pitch and voicing, spectral
centroid and flatness, onset strength.

One implementation for everything that describes audio frame by frame (the SAE explanations, and
neural encoding models that want the same descriptors). Each frame is described by a window centred
on its true centre (the midpoint of the frame table's ``start_s``/``end_s``), at least
``min_window_s`` long, so the descriptors line up with the activations of any model whatever its rate.

- ``loudness_db``: RMS level in dB re full scale (floor -100 dB);
- ``voicing``: peak of the normalised autocorrelation between 60 and 400 Hz lags (0..1);
  ``pitch_hz``: the lag of that peak as a frequency where ``voicing >= voiced_above``, else NaN;
- ``centroid_hz``: spectral centroid of the Hann-windowed power spectrum;
- ``flatness``: spectral flatness (geometric / arithmetic mean power; 1 = white noise, 0 = a tone);
- ``onset``: spectral flux, the summed positive increase of the log-magnitude spectrum from a window
  ``onset_lag_s`` earlier (large at note and syllable onsets).

Example
-------
>>> sr = 16000
>>> t = np.arange(sr) / sr
>>> audio = np.where(t < 0.5, 0.5 * np.sin(2 * np.pi * 200 * t), 0.01 * np.random.default_rng(0).standard_normal(sr))
>>> times = np.stack([np.arange(50) * 0.02, np.arange(1, 51) * 0.02], axis=1)   # 50 Hz frames
>>> d = frame_descriptors(audio, sr, times)
>>> list(d.columns)
['loudness_db', 'voicing', 'pitch_hz', 'centroid_hz', 'flatness', 'onset']
>>> bool(abs(d.pitch_hz[5] - 200) < 3), bool(d.voicing[5] > 0.9), bool(d.flatness[40] > 10 * d.flatness[5])
(True, True, True)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import fft as sp_fft
from scipy import signal

__all__ = ["DESCRIPTORS", "corpus_descriptors", "frame_descriptors"]

DESCRIPTORS = ("loudness_db", "voicing", "pitch_hz", "centroid_hz", "flatness", "onset")


def _windows(audio: np.ndarray, centres: np.ndarray, n: int) -> np.ndarray:
    """``[len(centres), n]`` samples centred on ``centres`` (sample indices), zero-padded at the edges."""
    pad = n // 2 + 1
    padded = np.concatenate([np.zeros(pad, audio.dtype), audio, np.zeros(n + pad, audio.dtype)])
    starts = np.clip(centres - n // 2 + pad, 0, len(padded) - n)
    return padded[starts[:, None] + np.arange(n)[None, :]]


def frame_descriptors(audio: np.ndarray, sr: int, times: np.ndarray, min_window_s: float = 0.032,
                      pitch_window_s: float = 0.04, fmin: float = 60.0, fmax: float = 400.0,
                      voiced_above: float = 0.5, onset_lag_s: float = 0.02) -> pd.DataFrame:
    """Descriptors (module docstring) of mono ``audio`` at ``sr`` Hz for frames ``times [T, 2]``
    (start/end seconds); one row per frame, columns :data:`DESCRIPTORS`."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    times = np.asarray(times, dtype=np.float64).reshape(-1, 2)
    if not len(times):
        return pd.DataFrame({c: np.zeros(0) for c in DESCRIPTORS})
    if sr <= 2 * fmax:
        raise ValueError(f"frame_descriptors: sample rate {sr} Hz is too low for pitch up to {fmax} Hz")
    centres = np.round(times.mean(axis=1) * sr).astype(np.int64)
    width = max(times[:, 1] - times[:, 0])
    n = int(2 ** np.ceil(np.log2(max(min_window_s, width) * sr)))
    win = np.hanning(n).astype(np.float32)
    frames = _windows(audio, centres, n)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loudness = 20 * np.log10(np.maximum(rms, 1e-5))
    power = np.abs(sp_fft.rfft(frames * win, axis=1)).astype(np.float64) ** 2 + 1e-20
    freqs = np.fft.rfftfreq(n, 1 / sr)
    centroid = (power * freqs).sum(1) / power.sum(1)
    flatness = np.exp(np.mean(np.log(power), axis=1)) / power.mean(1)
    silent = rms < 1e-4  # digital silence: no spectrum to speak of
    centroid[silent], flatness[silent] = 0.0, 0.0
    prev = _windows(audio, centres - round(onset_lag_s * sr), n)
    mag_prev = np.log1p(np.abs(sp_fft.rfft(prev * win, axis=1)).astype(np.float64) * 10)
    onset = np.maximum(np.log1p(np.sqrt(power) * 10) - mag_prev, 0).sum(1) / (n // 2 + 1)
    # pitch on a 2x decimated signal when that still holds fmax: half the autocorrelation work
    q = 2 if sr / 2 > 4 * fmax else 1
    low = signal.resample_poly(audio, 1, q).astype(np.float32) if q > 1 else audio
    voicing, pitch = _pitch(low, sr / q, centres // q, pitch_window_s, fmin, fmax)
    pitch = np.where((voicing >= voiced_above) & ~silent, pitch, np.nan)
    voicing[silent] = 0.0
    return pd.DataFrame({"loudness_db": loudness, "voicing": voicing, "pitch_hz": pitch,
                         "centroid_hz": centroid, "flatness": flatness, "onset": onset})


def _pitch(audio, sr, centres, window_s, fmin, fmax) -> tuple[np.ndarray, np.ndarray]:
    """Normalised autocorrelation peak (voicing) and its frequency, per window (FFT autocorrelation)."""
    n = round(window_s * sr)
    frames = _windows(audio, centres, n)
    frames = frames - frames.mean(1, keepdims=True)
    nfft = sp_fft.next_fast_len(2 * n, real=True)
    spec = sp_fft.rfft(frames, nfft, axis=1)
    ac = sp_fft.irfft(np.abs(spec) ** 2, nfft, axis=1)[:, :n].astype(np.float64)
    lo, hi = int(sr / fmax), min(int(sr / fmin), n - 2)
    # unbiased normalisation: lag l has n - l overlapping samples
    ac = ac / np.maximum(ac[:, :1], 1e-12) * (n / (n - np.arange(n)))[None, :]
    seg = ac[:, lo : hi + 1]
    # the shortest lag whose local peak is within 10% of the best one (avoids octave errors: every
    # multiple of the period peaks too)
    peak = np.zeros_like(seg, dtype=bool)
    peak[:, 1:-1] = (seg[:, 1:-1] >= seg[:, :-2]) & (seg[:, 1:-1] >= seg[:, 2:])
    peak |= seg == seg.max(1, keepdims=True)
    best = (peak & (seg >= 0.9 * seg.max(1, keepdims=True))).argmax(1)
    voicing = np.clip(seg[np.arange(len(seg)), best], 0.0, 1.0)
    lag = (best + lo).astype(np.float64)
    # parabolic interpolation of the peak for sub-sample lags
    i = best + lo
    ok = (i > lo) & (i < hi)
    a, b, c = ac[ok, i[ok] - 1], ac[ok, i[ok]], ac[ok, i[ok] + 1]
    denom = a - 2 * b + c
    lag[ok] += np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    return voicing, sr / lag


def corpus_descriptors(frames: pd.DataFrame, corpus, sr: int = 16000, progress: bool = False) -> pd.DataFrame:
    """:func:`frame_descriptors` for the rows of a cache's frame table (``clip_id``, ``start_s``,
    ``end_s``), each clip's audio read once from ``corpus``; rows in the order of ``frames``."""
    from tqdm.auto import tqdm

    from workbench.audio import load_audio

    frames = frames.reset_index(drop=True)
    out = np.full((len(frames), len(DESCRIPTORS)), np.nan)
    by_id = {c.id: c for c in corpus}
    groups = frames.groupby("clip_id", sort=False).indices
    for cid, rows in tqdm(groups.items(), desc="acoustic descriptors", disable=not progress):
        if cid not in by_id:
            raise KeyError(f"clip {cid!r} of the frame table is not in the corpus ({corpus.root if hasattr(corpus, 'root') else ''})")
        audio = load_audio(corpus.audio_path(by_id[cid]), sr=sr)
        part = frames.iloc[rows]
        d = frame_descriptors(audio, sr, part[["start_s", "end_s"]].to_numpy())
        out[rows] = d.to_numpy()
    return pd.DataFrame(out, columns=list(DESCRIPTORS))
