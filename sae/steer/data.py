"""Corpora for steering: cut long non-speech clips into segments and split by source into fit/dev/eval.

Every clip belongs to a *group*: the source clip it was cut from (``source_id``), else its speaker,
else itself. Splits are drawn by group, stratified by (speech or not, synthetic or real), so
segments of one recording or clips of one voice never sit on both sides of a split.

Example
-------
>>> from workbench.corpus import Clip, Corpus
>>> corpus = Corpus([Clip(f"s{i}", "x.flac", "speech", speaker=f"v{i % 4}") for i in range(8)]
...                 + [Clip(f"m{i}", "x.flac", "music", extra={"source_id": f"src{i // 2}"}) for i in range(8)])
>>> splits = split_by_group(corpus, {"fit": 0.5, "eval": 0.5}, seed=0)
>>> fit_groups = {clip_group(c) for c in splits["fit"]}
>>> any(clip_group(c) in fit_groups for c in splits["eval"])
False
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from workbench.corpus import Clip, Corpus
from workbench.names import safe_component

log = logging.getLogger(__name__)


def clip_group(clip: Clip) -> str:
    """The unit a split keeps together: source recording, else speaker, else the clip
    (:func:`workbench.conventions.group_of`, the one definition every analysis uses)."""
    from workbench.conventions import group_of

    return group_of(clip)


def is_speech(clip: Clip) -> bool:
    return clip.domain == "speech"


def _stratum(clip: Clip) -> tuple[bool, bool]:
    return is_speech(clip), clip.extra.get("source") == "synthetic" or clip.id.startswith("synth_")


def segment_nonspeech(corpus: Corpus, out_dir: str | Path, seconds: float = 5.0, min_seconds: float = 1.0,
                      sr: int = 16000) -> Corpus:
    """Cut each non-speech clip longer than ``seconds`` into consecutive ``seconds`` segments
    (a last piece shorter than ``min_seconds`` is dropped), written as FLAC under ``out_dir/audio``.

    Speech clips are kept whole (their transcripts cover the whole clip). Every clip gets
    ``source_id`` (the clip it came from); paths are absolute so the corpus can be merged.
    A clip that cannot be read is reported by name and skipped.
    """
    from workbench.audio import load_audio, save_audio

    out = Path(out_dir)
    clips = []
    for clip in corpus:
        src = corpus.audio_path(clip).resolve()
        base = {**clip.extra, "source_id": clip.extra.get("source_id") or clip.id}
        if is_speech(clip) or (clip.duration_s or 0) <= seconds:
            clips.append(Clip(clip.id, str(src), clip.domain, clip.speaker, clip.transcript, clip.tiers,
                              clip.duration_s, base))
            continue
        try:
            audio = load_audio(src, sr=sr)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the corpus
            log.warning("skipping %s (%s): %s", clip.id, src, e)
            continue
        n = int(seconds * sr)
        for k, start in enumerate(range(0, len(audio), n)):
            piece = audio[start : start + n]
            if len(piece) < min_seconds * sr:
                break
            path = save_audio(out / "audio" / f"{safe_component(clip.id)}_seg{k:02d}.flac", piece, sr)
            clips.append(Clip(f"{clip.id}_seg{k:02d}", str(path.resolve()), clip.domain, clip.speaker, None, {},
                              len(piece) / sr, {**base, "offset_s": start / sr}))
    return Corpus(clips, root=out)


def split_by_group(corpus: Corpus, fractions: Mapping[str, float], seed: int = 0) -> dict[str, Corpus]:
    """Assign whole groups to splits, in each stratum filling each split to its share of clips."""
    names = list(fractions)
    share = np.array([float(fractions[n]) for n in names])
    if (share <= 0).any():
        raise ValueError(f"split fractions must be positive, got {dict(fractions)}")
    share = share / share.sum()
    rng = np.random.default_rng(seed)
    assigned: dict[str, list[Clip]] = {n: [] for n in names}
    strata: dict[tuple, dict[str, list[Clip]]] = {}
    for c in corpus:
        strata.setdefault(_stratum(c), {}).setdefault(clip_group(c), []).append(c)
    for key in sorted(strata):
        groups = strata[key]
        order = sorted(groups)
        rng.shuffle(order)
        counts = np.zeros(len(names))
        total = sum(len(groups[g]) for g in order)
        for g in order:
            # the split furthest below its target share of this stratum takes the next group
            need = share * total - counts
            i = int(np.argmax(need))
            assigned[names[i]] += groups[g]
            counts[i] += len(groups[g])
    return {n: Corpus(v, root=corpus.root) for n, v in assigned.items()}


def merge(corpora: Iterable[Corpus]) -> Corpus:
    """One corpus from several (absolute audio paths; clip ids must be unique)."""
    clips = []
    for c in corpora:
        for clip in c:
            clips.append(Clip(clip.id, str(c.audio_path(clip).resolve()), clip.domain, clip.speaker,
                              clip.transcript, clip.tiers, clip.duration_s, dict(clip.extra)))
    return Corpus(clips, root=".")


def prepare(sources: Iterable[str | Path], out_dir: str | Path, seconds: float = 5.0,
            fractions: Mapping[str, float] | None = None, seed: int = 0) -> dict[str, Path]:
    """Load ``sources`` (corpus dirs / manifests), cut non-speech into segments, split by group and
    write ``out_dir/<split>/manifest.jsonl``; returns ``{split: manifest path}``."""
    from workbench.corpus import load_corpus

    out = Path(out_dir)
    fractions = fractions or {"fit": 0.5, "dev": 0.2, "eval": 0.3}
    parts = [segment_nonspeech(load_corpus(s), out / "segments", seconds) for s in sources]
    splits = split_by_group(merge(parts), fractions, seed=seed)
    written = {}
    for name, corpus in splits.items():
        written[name] = corpus.save(out / name / "manifest.jsonl")
        s = corpus.summary()
        log.info("%s: %d clips, %.1f min, domains %s", name, s["clips"], s["hours"] * 60, s["domains"])
    return written


def synth_quiet(n: int, out_dir: str | Path, seed: int = 0, duration_s: float = 4.0, sr: int = 16000) -> Corpus:
    """``n`` near-silent clips (room tone: pink/brown noise at peak 0.001-0.01; Whisper's classic
    hallucination trigger), domain "environment", written with ``manifest.jsonl``."""
    from workbench.audio import save_audio
    from workbench.corpus.nonspeech import coloured_noise

    rng = np.random.default_rng(seed)
    out, clips = Path(out_dir), []
    for i in range(n):
        colour = ("pink", "brown")[i % 2]
        peak = float(10 ** rng.uniform(-3, -2))
        x = coloured_noise(int(duration_s * sr), sr, colour, rng, peak=peak)
        rel = f"audio/quiet_{i:04d}.flac"
        save_audio(out / rel, x, sr)
        clips.append(Clip(f"quiet_{i:04d}", rel, "environment", duration_s=duration_s,
                          extra={"kind": "quiet", "colour": colour, "peak": round(peak, 5), "source": "synthetic"}))
    corpus = Corpus(clips, root=out)
    corpus.save(out / "manifest.jsonl")
    return corpus
