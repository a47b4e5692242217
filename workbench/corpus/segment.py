"""Cut long recordings into segments that keep their aligned transcripts and tiers.

``workbench corpus segment CORPUS --seconds S --out DIR`` cuts each clip into pieces of about S
seconds. Where a clip has a word tier (from a TextGrid, espeak timings, or ``--align``, which
force-aligns clips that have a transcript and no word tier), every cut falls in the pause between
two words nearest to the target length (never inside a word), and each segment gets the words
and phones inside it (times shifted to the segment) and its transcript made of those words.
Clips without words (music, noise, unaligned speech) are cut at fixed lengths and keep no
transcript. Every segment records ``source_id`` (the recording it was cut from, so all its
segments fall on one side of a split), ``segment_start_s`` and ``segment_end_s``.

Example
-------
>>> from workbench.corpus.types import Segment
>>> words = [Segment(0.2, 0.6, "a"), Segment(0.7, 1.4, "b"), Segment(1.6, 2.2, "c"), Segment(2.3, 3.0, "d")]
>>> cut_points(words, duration_s=3.2, seconds=1.5)
[(0.0, 1.5), (1.5, 3.2)]
"""
from __future__ import annotations

import os
from pathlib import Path

from workbench.audio import load_audio, save_audio
from workbench.corpus.types import SILENCE, Clip, Corpus, Segment

__all__ = ["cut_points", "segment_corpus"]

_NON_WORDS = {SILENCE, "<sil>", "sp", "<s>", "</s>", ""}


def cut_points(words: list[Segment] | None, duration_s: float, seconds: float) -> list[tuple[float, float]]:
    """``[(start, end)]`` covering ``[0, duration_s]``; cuts in the mid-point of the inter-word gap
    nearest to each target (at least half a target after the last cut), fixed cuts without words."""
    if seconds <= 0:
        raise ValueError(f"--seconds must be > 0, got {seconds}")
    real = [w for w in (words or []) if w.label not in _NON_WORDS]
    gaps = [(a.end_s + b.start_s) / 2 for a, b in zip(real, real[1:]) if b.start_s >= a.end_s]
    cuts, start = [], 0.0
    while duration_s - start > 1.5 * seconds:
        target = start + seconds
        if real:
            ok = [g for g in gaps if start + seconds / 2 <= g <= duration_s - seconds / 2]
            if not ok:
                break
            end = min(ok, key=lambda g: abs(g - target))
        else:
            end = target
        cuts.append((round(start, 6), round(end, 6)))
        start = end
    cuts.append((round(start, 6), round(duration_s, 6)))
    return cuts


def _inside(segs: list[Segment], a: float, b: float) -> list[Segment]:
    """Segments overlapping ``[a, b)``, clipped and shifted to start at ``a``."""
    out = []
    for s in segs:
        lo, hi = max(s.start_s, a), min(s.end_s, b)
        if hi > lo:
            out.append(Segment(round(lo - a, 6), round(hi - a, 6), s.label))
    return out


def segment_corpus(corpus: Corpus, seconds: float, out: str | os.PathLike, *, align: bool = False,
                   verbose: bool = True, jobs: int = 1) -> Corpus:
    """Write the segments of every clip of ``corpus`` to ``out`` (see the module docstring); ``jobs``: clips
    aligned side by side (:func:`workbench.corpus.align.align_corpus`)."""
    from tqdm.auto import tqdm

    out = Path(out)
    if align:
        from workbench.corpus.align import align_corpus

        align_corpus(corpus, verbose=verbose, jobs=jobs)
    rows: list[Clip] = []
    for clip in tqdm(list(corpus), desc="segment", unit="clip", disable=not verbose):
        audio = load_audio(corpus.audio_path(clip), sr=16000)
        duration = len(audio) / 16000
        words = clip.tiers.get("words")
        for j, (a, b) in enumerate(cut_points(words, duration, seconds)):
            seg_id = f"{clip.id}_s{j:03d}"
            rel = f"audio/{seg_id}.flac"
            if not (out / rel).is_file():
                save_audio(out / rel, audio[int(round(a * 16000)):int(round(b * 16000))], 16000)
            tiers = {name: _inside(segs, a, b) for name, segs in clip.tiers.items()}
            text = " ".join(w.label for w in tiers.get("words", []) if w.label not in _NON_WORDS) or None
            rows.append(Clip(seg_id, rel, clip.domain, speaker=clip.speaker,
                             transcript=text if words else None, tiers=tiers if words else {},
                             duration_s=round(b - a, 6),
                             extra={**{k: v for k, v in clip.extra.items() if k not in ("duration_s",)},
                                    "source_id": clip.extra.get("source_id") or clip.id,
                                    "segment_start_s": a, "segment_end_s": b}))
    result = Corpus(rows, root=out)
    result.save(out / "manifest.jsonl")
    return result
