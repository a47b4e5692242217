"""Noisy and overlapped versions of a speech corpus, with their clean references kept.

``workbench corpus mix --speech CORPUS --noise CORPUS --snr 0 5 10 --out DIR`` writes, for every
speech clip and every SNR, the clip plus a background (a noise clip drawn per mixture, cut at a
random offset or tiled) at that SNR. ``--speakers 2`` instead mixes each clip with a clip of a
*different* speaker at the given signal-to-interferer ratios (WSJ0-2mix style); ``--reverb RT60``
convolves the speech with a synthetic room response first. Each row keeps the speech clip's
transcript and tiers (nothing moves in time), and adds ``condition`` (``clean``, ``noise_5db``,
``2spk_0db``, ``reverb0.4_noise_5db``...), ``snr_db``, ``clean_path`` (the dry speech, for SI-SNR
and for "clean vs noisy" comparisons), ``clean_id``, ``source_id`` (the clean clip: all versions of
one utterance stay on one side of a split), ``noise_id`` / ``interferer_id`` and, for two speakers,
``interferer_path``. ``--keep-clean`` (default on) adds the clean clips as condition ``clean``.
Every field becomes a frame-table column of the activation cache, so analyses split by
``condition``.

Example
-------
>>> import numpy as np
>>> rir = synthetic_rir(0.3, seed=0)
>>> float(rir[0]), len(rir) == int(0.3 * 16000)
(1.0, True)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from workbench.audio import load_audio, save_audio
from workbench.corpus.augment import mix_at_snr
from workbench.corpus.types import Clip, Corpus

__all__ = ["synthetic_rir", "mix_corpus"]

SR = 16000


def synthetic_rir(rt60: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    """A simple room impulse response: a unit direct path and exponentially decaying noise
    (-60 dB at ``rt60`` seconds)."""
    if rt60 <= 0:
        raise ValueError(f"--reverb RT60 must be > 0 seconds, got {rt60}")
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    tail = np.random.default_rng(seed).standard_normal(n) * np.exp(-6.9078 * t / rt60) * 0.3
    tail[0] = 1.0
    return tail.astype(np.float32)


def _reverb(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    y = fftconvolve(x, rir)[: len(x)]
    return (y * (np.abs(x).max() / (np.abs(y).max() or 1.0))).astype(np.float32)


def _background(noise: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(noise) > n:
        a = int(rng.integers(0, len(noise) - n))
        return noise[a:a + n]
    return np.tile(noise, int(np.ceil(n / max(len(noise), 1))))[:n]


def _write(out: Path, clip_id: str, audio: np.ndarray) -> str:
    rel = f"audio/{clip_id}.flac"
    if not (out / rel).is_file():
        peak = float(np.abs(audio).max())
        save_audio(out / rel, audio / peak * 0.95 if peak > 0.95 else audio, SR)  # no clipping
    return rel


def mix_corpus(speech: Corpus, out: str | os.PathLike, snrs: Sequence[float], *, noise: Corpus | None = None,
               speakers: int = 1, reverb: float | None = None, keep_clean: bool = True, seed: int = 0,
               verbose: bool = True) -> Corpus:
    """Write the mixtures of ``speech`` (see the module docstring); returns the new corpus."""
    from tqdm.auto import tqdm

    if speakers not in (1, 2):
        raise ValueError(f"--speakers must be 1 (speech + noise) or 2 (two talkers), got {speakers}")
    if speakers == 1 and (noise is None or not len(noise)):
        raise ValueError("speech + noise needs a --noise corpus with at least one clip")
    talkers = [c for c in speech if c.domain == "speech"]
    if not talkers:
        raise ValueError("the --speech corpus has no clip of domain 'speech'")
    if speakers == 2 and len({c.speaker or c.id for c in talkers}) < 2:
        raise ValueError("two-speaker mixtures need clips of at least two different speakers")
    out = Path(out)
    rng = np.random.default_rng(seed)
    noises = {c.id: (noise, c) for c in noise} if noise is not None else {}
    cache: dict[str, np.ndarray] = {}

    def audio_of(corpus: Corpus, clip: Clip) -> np.ndarray:
        key = f"{id(corpus)}:{clip.id}"
        if key not in cache:
            cache[key] = load_audio(corpus.audio_path(clip), sr=SR)
        return cache[key]

    rows: list[Clip] = []
    prefix = f"reverb{reverb:g}_" if reverb else ""
    for i, clip in enumerate(tqdm(talkers, desc="mix", unit="clip", disable=not verbose)):
        dry = audio_of(speech, clip)
        clean_rel = _write(out, f"{clip.id}__clean", dry)
        base = {**clip.extra, "clean_id": clip.id, "clean_path": clean_rel,
                "source_id": clip.extra.get("source_id") or clip.id}
        if keep_clean:
            rows.append(Clip(f"{clip.id}__clean", clean_rel, clip.domain, clip.speaker, clip.transcript, clip.tiers,
                             round(len(dry) / SR, 6), {**base, "condition": "clean", "snr_db": None}))
        wet = _reverb(dry, synthetic_rir(reverb, seed=seed + i)) if reverb else dry
        for snr in snrs:
            extra = {**base, "snr_db": float(snr)}
            if speakers == 1:
                nid = list(noises)[int(rng.integers(len(noises)))]
                src, nclip = noises[nid]
                mixed = mix_at_snr(wet, _background(audio_of(src, nclip), len(wet), rng), snr)
                cond = f"{prefix}noise_{snr:g}db"
                extra.update(noise_id=nid, noise_domain=nclip.domain)
            else:
                others = [c for c in talkers if (c.speaker or c.id) != (clip.speaker or clip.id)]
                other = others[int(rng.integers(len(others)))]
                mixed = mix_at_snr(wet, _background(audio_of(speech, other), len(wet), rng), snr)
                cond = f"{prefix}2spk_{snr:g}db"
                extra.update(interferer_id=other.id, interferer_path=str(speech.audio_path(other).resolve()))
            cid = f"{clip.id}__{cond}"
            rows.append(Clip(cid, _write(out, cid, mixed), clip.domain, clip.speaker, clip.transcript, clip.tiers,
                             round(len(mixed) / SR, 6), {**extra, "condition": cond}))
    result = Corpus(rows, root=out)
    result.save(out / "manifest.jsonl")
    return result
