"""Acoustic baselines at the neural rate: broadband envelope and a log-band spectrogram.

Every rate change goes through :func:`to_rate` (``scipy.signal.resample_poly``: a polyphase
anti-aliasing FIR), also used to bring model frames (Whisper 50 Hz, cochleagram 200 Hz) to the
recording's rate.

Example
-------
>>> import numpy as np
>>> sr = 16000
>>> t = np.arange(2 * sr) / sr
>>> audio = np.sin(2 * np.pi * 440 * t) * (t < 1)              # a tone for the first second
>>> env = envelope(audio, sr, 100)
>>> env.shape, bool(env[20:80].mean() > 10 * env[120:180].mean())
((200, 1), True)
>>> spectrogram(audio, sr, 100, n_bands=8).shape
(200, 8)
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

__all__ = ["to_rate", "envelope", "spectrogram"]


def to_rate(x: np.ndarray, from_rate: float, to_rate_hz: float, n_out: int | None = None,
            t0: float = 0.0) -> np.ndarray:
    """Resample ``x [T, ...]`` along time from ``from_rate`` to ``to_rate_hz`` (anti-aliased), then
    trim or edge-pad to ``n_out`` samples when given (frame counts round differently per model).

    ``t0`` is the time (s) of input sample 0 (a model frame's centre, e.g. 10 ms for Whisper's
    first frame): the output is shifted so that its sample ``j`` is the value at ``j / to_rate_hz``.
    """
    x = np.asarray(x, dtype=np.float64)
    if from_rate <= 0 or to_rate_hz <= 0:
        raise ValueError(f"rates must be positive, got {from_rate:g} Hz -> {to_rate_hz:g} Hz")
    ratio = Fraction(str(float(to_rate_hz))) / Fraction(str(float(from_rate)))
    ratio = ratio if ratio.denominator <= 10**6 else ratio.limit_denominator(10**6)
    if ratio != 1:
        x = signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=0, padtype="line")
    if t0:
        x = _shift(x, t0 * float(to_rate_hz))
    if n_out is not None:
        if len(x) >= n_out:
            x = x[:n_out]
        else:
            x = np.concatenate([x, np.repeat(x[-1:], n_out - len(x), axis=0)], axis=0)
    return x


def _shift(x: np.ndarray, offset: float) -> np.ndarray:
    """``y[j] = x(j - offset)`` by linear interpolation along axis 0 (edges held)."""
    pos = np.clip(np.arange(len(x)) - offset, 0, len(x) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(x) - 1)
    w = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return (1 - w) * x[lo] + w * x[hi]


def envelope(audio: np.ndarray, sr: int, rate: float, n_out: int | None = None) -> np.ndarray:
    """Broadband Hilbert envelope ``[T, 1]`` at ``rate`` Hz (low-passed by the resampler)."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    n_fft = sp_fft.next_fast_len(len(audio))
    env = np.abs(signal.hilbert(audio, N=n_fft)[: len(audio)])
    return np.clip(to_rate(env[:, None], sr, rate, _n_out(audio, sr, rate, n_out)), 0.0, None)


def _n_out(audio: np.ndarray, sr: float, rate: float, n_out: int | None) -> int:
    """Samples at ``rate`` covering the audio (``n_out`` when the caller fixes it)."""
    return int(round(len(audio) * rate / sr)) if n_out is None else int(n_out)


def spectrogram(audio: np.ndarray, sr: int, rate: float, n_bands: int = 16, fmin: float = 100.0,
                fmax: float = 8000.0, n_out: int | None = None) -> np.ndarray:
    """Log-compressed power in ``n_bands`` log-spaced bands between ``fmin`` and ``fmax`` Hz,
    ``[T, n_bands]`` at ``rate`` Hz (25 ms Hann windows every 5 ms, then :func:`to_rate`)."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    hop = max(1, int(round(sr / 200)))
    nper = max(hop * 2, int(round(0.025 * sr)))
    if len(audio) < nper:
        raise ValueError(f"audio of {len(audio)} samples is shorter than one {nper}-sample spectrogram window")
    # pad by half a window so frame j is centred on sample j * hop (no 12 ms shift of the features)
    padded = np.pad(audio, (nper // 2, nper // 2), mode="reflect")
    freqs, _, power = signal.spectrogram(padded, fs=sr, window="hann", nperseg=nper, noverlap=nper - hop,
                                         mode="psd")
    fmax = min(fmax, sr / 2)
    edges = np.geomspace(fmin, fmax, n_bands + 1)
    band = np.searchsorted(edges, freqs, side="right") - 1
    bands = np.zeros((n_bands, power.shape[1]))
    for b in range(n_bands):
        sel = band == b
        if sel.any():
            bands[b] = power[sel].mean(0)
        else:  # a band narrower than one FFT bin: take the nearest bin
            bands[b] = power[np.argmin(np.abs(freqs - np.sqrt(edges[b] * edges[b + 1])))]
    frames = np.log1p(bands.T / (np.median(bands) + 1e-20))
    return to_rate(frames, sr / hop, rate, _n_out(audio, sr, rate, n_out))
