"""Synthetic-speech throughput: espeak-ng synthesis + 16 kHz resampling + FLAC writing + manifest.

Prints one JSON object: clips/s, seconds of audio made per wall-clock second, and the
throughput of synthesis alone (no resampling or writing).

Usage
-----
$ python benchmarks/synth_throughput.py --n 200
{"clips": 200, "clips_per_s": ..., "audio_s_per_s": ..., "synth_only_clips_per_s": ...}
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="clips to synthesize (default 200)")
    ap.add_argument("--speakers", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from workbench.corpus.synth import SENTENCES, make_speakers, synth_corpus, synthesize

    synthesize("Warm up.", "en-us", sr=16000)  # library, voice data and scipy.signal load once
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        corpus = synth_corpus(args.n, tmp, seed=args.seed, n_speakers=args.speakers, verbose=False)
        wall = time.perf_counter() - t0
    audio_s = sum(c.duration_s for c in corpus)
    speakers = make_speakers(args.speakers, args.seed)
    t0 = time.perf_counter()
    for i in range(args.n):
        s = speakers[i % len(speakers)]
        synthesize(SENTENCES[i % len(SENTENCES)], s.espeak_voice, s.pitch, s.rate)
    synth_only = time.perf_counter() - t0
    print(json.dumps({
        "benchmark": "synth_throughput",
        "clips": args.n,
        "clips_per_s": round(args.n / wall, 2),
        "audio_s_per_s": round(audio_s / wall, 2),
        "mean_clip_s": round(audio_s / args.n, 3),
        "synth_only_clips_per_s": round(args.n / synth_only, 2),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }))


if __name__ == "__main__":
    main()
