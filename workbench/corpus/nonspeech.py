"""Simple synthetic non-speech: coloured noise, tones, chords and click trains.

Each generator returns float32 mono audio peaking at ``peak``; :func:`synth_nonspeech`
writes a small labelled corpus of them (noise and clicks are domain "environment",
tones and chords domain "music"), so tests can check that domain labels and
non-speech inputs flow through the pipeline with a known answer.

Example
-------
>>> import numpy as np
>>> x = coloured_noise(16000, 16000, "pink", np.random.default_rng(0))
>>> x.dtype, x.shape, float(np.abs(x).max()) <= 0.5 + 1e-6
(dtype('float32'), (16000,), True)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from workbench.audio import save_audio
from workbench.corpus.types import Clip, Corpus

__all__ = ["coloured_noise", "tone", "chord", "click_train", "synth_nonspeech", "KINDS"]

#: kind -> domain
KINDS = {
    "white_noise": "environment", "pink_noise": "environment", "brown_noise": "environment",
    "clicks": "environment", "tone": "music", "chord": "music",
}
_NOISE_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1/f^exponent


def _normalise(x: np.ndarray, peak: float) -> np.ndarray:
    m = float(np.abs(x).max())
    return (x * (peak / m) if m > 0 else x).astype(np.float32)


def _fade(x: np.ndarray, sr: int, fade_s: float = 0.01) -> np.ndarray:
    n = min(int(fade_s * sr), len(x) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def coloured_noise(n: int, sr: int, colour: str = "white", rng: np.random.Generator | None = None,
                   peak: float = 0.5) -> np.ndarray:
    """White, pink (1/f) or brown (1/f^2) noise of ``n`` samples, shaped in the frequency domain."""
    if colour not in _NOISE_EXPONENT:
        raise ValueError(f"colour must be one of {sorted(_NOISE_EXPONENT)}, got {colour!r}")
    rng = rng or np.random.default_rng()
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f[0] = f[1] if n > 1 else 1.0  # no infinite DC gain
    spec *= f ** (-_NOISE_EXPONENT[colour] / 2.0)
    spec[0] = 0.0
    return _normalise(np.fft.irfft(spec, n), peak)


def tone(n: int, sr: int, freq: float = 440.0, peak: float = 0.5, harmonics: int = 1) -> np.ndarray:
    """A steady tone at ``freq`` Hz with ``harmonics`` partials of 1/k amplitude."""
    t = np.arange(n) / sr
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1) if freq * k < sr / 2)
    return _fade(_normalise(np.asarray(x, dtype=np.float64), peak), sr)


def chord(n: int, sr: int, root: float = 220.0, intervals: tuple[int, ...] = (0, 4, 7), peak: float = 0.5
          ) -> np.ndarray:
    """Equal-tempered chord: ``intervals`` in semitones above ``root`` (default a major triad)."""
    x = sum(tone(n, sr, root * 2 ** (i / 12), peak=1.0, harmonics=3) for i in intervals)
    return _fade(_normalise(np.asarray(x, dtype=np.float64), peak), sr)


def click_train(n: int, sr: int, rate_hz: float = 4.0, click_ms: float = 2.0, peak: float = 0.5) -> np.ndarray:
    """Rectangular clicks of ``click_ms`` every ``1/rate_hz`` seconds."""
    x = np.zeros(n, dtype=np.float32)
    width = max(1, int(click_ms * sr / 1000))
    for start in np.arange(0, n, sr / rate_hz).astype(int):
        x[start:start + width] = peak
    return x


def _make(kind: str, n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    if kind.endswith("_noise"):
        colour = kind.split("_")[0]
        return coloured_noise(n, sr, colour, rng), {"colour": colour}
    if kind == "tone":
        f = float(rng.uniform(150, 1200))
        return tone(n, sr, f, harmonics=int(rng.integers(1, 5))), {"freq_hz": round(f, 2)}
    if kind == "chord":
        root = float(rng.uniform(110, 440))
        quality = [(0, 4, 7), (0, 3, 7), (0, 4, 7, 10)][int(rng.integers(3))]
        return chord(n, sr, root, quality), {"root_hz": round(root, 2), "intervals": ",".join(map(str, quality))}
    if kind == "clicks":
        r = float(rng.uniform(2, 20))
        return click_train(n, sr, r), {"rate_hz": round(r, 2)}
    raise ValueError(f"unknown non-speech kind {kind!r}; choose from {sorted(KINDS)}")


def synth_nonspeech(n: int, out_dir: str | os.PathLike, seed: int = 0, sr: int = 16000,
                    duration_s: float = 2.0, kinds: list[str] | None = None, id_prefix: str = "") -> Corpus:
    """Write ``n`` non-speech clips (cycling through ``kinds``) plus ``manifest.jsonl``.

    Each clip has domain "environment" (noise, clicks) or "music" (tones, chords) and its
    generator parameters in ``extra`` (``kind``, ``freq_hz``, ...). No tiers: a frame of
    these clips has no phone or word. Clip ids are ``id_prefix`` + ``<kind>_<index>``.

    Example
    -------
    >>> corpus = synth_nonspeech(6, "work/nonspeech", seed=0)   # doctest: +SKIP
    >>> corpus.summary()["domains"]                              # doctest: +SKIP
    {'environment': 4, 'music': 2}
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    kinds = kinds or list(KINDS)
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    clips = []
    samples = int(round(duration_s * sr))
    for i in range(n):
        kind = kinds[i % len(kinds)]
        audio, params = _make(kind, samples, sr, rng)
        clip_id = f"{id_prefix}{kind}_{i:04d}"
        rel = f"audio/{clip_id}.flac"
        save_audio(out / rel, audio, sr)
        clips.append(Clip(id=clip_id, path=rel, domain=KINDS[kind], duration_s=samples / sr,
                          extra={"kind": kind, "source": "synthetic", **params}))
    corpus = Corpus(clips, root=out)
    corpus.save(out / "manifest.jsonl")
    return corpus
