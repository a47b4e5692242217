"""More varied training audio from clips you have: random cuts, speed, level and background noise.

``workbench corpus augment CORPUS... --passes N [--noise CORPUS] --out DIR`` writes N augmented
passes over every clip of the source corpora (FLAC + ``manifest.jsonl``): each pass cuts the clip
into 6-28 s segments at a random offset (Whisper's frames fall on new window positions), plays it
x0.9-1.1 faster (tempo and pitch together), mixes half of the segments with a background at
5-25 dB SNR (a clip of ``--noise``, another non-speech clip of the sources, or coloured noise) and
sets a random level. A cut can split a word, so augmented speech keeps no transcript or tiers;
each output clip records ``source_id`` (the clip it came from, so it is grouped with it), the
cut (``cut_start_s``, ``cut_end_s``) and what was done (``aug_speed``, ``aug_background``,
``aug_snr_db``, ``aug_peak``). Clips listed in ``--exclude`` (e.g. the held-out clips) are never read.
Seeded: the same arguments give the same audio; clips already on disk are kept (resumable).

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> speech, noise = rng.standard_normal(16000), rng.standard_normal(8000)
>>> mixed = mix_at_snr(speech, noise, 10.0)
>>> round(snr_db(speech, mixed - speech), 6)
10.0
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from workbench.audio import load_audio, resample, save_audio
from workbench.corpus.types import Clip, Corpus

__all__ = ["speed", "mix_at_snr", "snr_db", "si_snr", "random_cuts", "augment_clip", "augment_corpus"]

SR = 16000


def speed(audio: np.ndarray, factor: float, sr: int = SR) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch together, like a tape)."""
    return resample(audio, int(round(sr * factor)), sr)


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """Signal-to-noise ratio in dB of two arrays (mean powers)."""
    return float(10 * np.log10(np.mean(np.square(signal, dtype=np.float64)) /
                               np.mean(np.square(noise, dtype=np.float64))))


def si_snr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-noise ratio (dB) of ``estimate`` against ``reference`` (both
    zero-meaned; the usual separation / enhancement measure).

    >>> x = np.sin(np.arange(1000) / 7.0)
    >>> round(si_snr(x, 3 * x + 0.1 * np.cos(np.arange(1000) / 3.0)), 1)
    29.5
    """
    n = min(len(reference), len(estimate))
    ref = np.asarray(reference[:n], np.float64) - np.mean(reference[:n])
    est = np.asarray(estimate[:n], np.float64) - np.mean(estimate[:n])
    target = ref * (est @ ref) / max(ref @ ref, 1e-20)
    noise = est - target
    return float(10 * np.log10(max(target @ target, 1e-20) / max(noise @ noise, 1e-20)))


def mix_at_snr(signal: np.ndarray, background: np.ndarray, snr: float) -> np.ndarray:
    """``signal`` plus ``background`` (tiled or cut to its length, its DC offset removed) scaled to
    ``snr`` dB. A silent signal or background comes back unchanged (no SNR is defined).
    """
    reps = int(np.ceil(len(signal) / max(len(background), 1)))
    bg = np.tile(background, reps)[: len(signal)].astype(np.float64)
    bg -= bg.mean()  # a DC offset is no audible noise (a whale recording here sits at +0.35): SNR of what is heard
    p_sig, p_bg = float(np.mean(np.square(signal, dtype=np.float64))), float(np.mean(bg ** 2))
    if p_sig == 0 or p_bg == 0:
        return np.asarray(signal, dtype=np.float32)
    return (signal + bg * np.sqrt(p_sig / (p_bg * 10 ** (snr / 10)))).astype(np.float32)


def random_cuts(n: int, rng: np.random.Generator, lo: float = 6.0, hi: float = 28.0,
                sr: int = SR) -> list[tuple[int, int]]:
    """Consecutive cuts of ``lo``-``hi`` s of an ``n``-sample clip, the first at a random offset."""
    cuts, a = [], int(rng.uniform(0, min(2.0, n / sr / 4)) * sr)
    while a < n - int(2 * sr):
        b = min(n, a + int(rng.uniform(lo, hi) * sr))
        cuts.append((a, b))
        a = b
    return cuts or [(0, n)]


def augment_clip(audio: np.ndarray, backgrounds: Sequence[np.ndarray], rng: np.random.Generator,
                 sr: int = SR) -> tuple[np.ndarray, dict]:
    """One augmented copy of ``audio`` and what was done to it (speed, background, snr_db, peak)."""
    from workbench.corpus.nonspeech import coloured_noise

    factor = float(rng.uniform(0.9, 1.1))
    out, info = speed(audio, factor, sr), {"speed": round(factor, 3), "background": None}
    if rng.random() < 0.5:
        if backgrounds and rng.random() < 0.6:
            i = int(rng.integers(len(backgrounds)))
            bg, info["background"] = backgrounds[i], f"clip{i}"
        else:
            colour = str(rng.choice(["white", "pink", "brown"]))
            bg, info["background"] = coloured_noise(len(out), sr, colour, rng=rng), f"{colour}_noise"
        info["snr_db"] = round(float(rng.uniform(5, 25)), 2)
        out = mix_at_snr(out, bg, info["snr_db"])
    info["peak"] = round(float(rng.uniform(0.2, 0.95)), 3)
    peak = float(np.abs(out).max()) or 1.0
    return (out / peak * info["peak"]).astype(np.float32), info


def augment_corpus(sources: Sequence[Corpus], out: str | os.PathLike, passes: int = 4, *,
                   noise: Corpus | None = None, exclude: set[str] | frozenset = frozenset(), seed: int = 0,
                   verbose: bool = True) -> Corpus:
    """Write ``passes`` augmented passes over every clip of ``sources`` (see the module docstring)."""
    from tqdm.auto import tqdm

    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    out = Path(out)
    clips = [(c, src) for src in sources for c in src if c.id not in exclude]
    if not clips:
        raise ValueError("no clips to augment (every clip is excluded or the sources are empty)")
    bg_clips = [(c, noise) for c in noise] if noise is not None else [(c, s) for c, s in clips if c.domain != "speech"]
    backgrounds = {c.id: load_audio(s.audio_path(c), sr=SR) for c, s in bg_clips}
    rng = np.random.default_rng(seed)
    rows: list[Clip] = []
    for clip, src in tqdm(clips, desc="augment", unit="clip", disable=not verbose):
        audio = load_audio(src.audio_path(clip), sr=SR)
        others = [x for k, x in backgrounds.items() if k != clip.id]  # never mixed with itself
        for p in range(passes):
            for j, (a, b) in enumerate(random_cuts(len(audio), rng)):
                x, info = augment_clip(audio[a:b], others, rng)
                clip_id = f"aug_{clip.id}_p{p}_{j:02d}"
                rel = f"audio/{clip_id}.flac"
                if not (out / rel).is_file():
                    save_audio(out / rel, x, SR)
                rows.append(Clip(clip_id, rel, clip.domain, speaker=clip.speaker, duration_s=round(len(x) / SR, 3),
                                 extra={"source_id": clip.extra.get("source_id") or clip.id,
                                        **{f"aug_{k}": v for k, v in info.items()},
                                        "cut_start_s": round(a / SR, 3), "cut_end_s": round(b / SR, 3)}))
    corpus = Corpus(rows, root=out)
    corpus.save(out / "manifest.jsonl")
    return corpus
