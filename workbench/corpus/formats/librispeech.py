"""LibriSpeech and LibriTTS layouts: ``[SUBSET/]SPEAKER/CHAPTER/`` folders of utterances.

- LibriSpeech: ``SPEAKER-CHAPTER-UTT.flac`` and one ``SPEAKER-CHAPTER.trans.txt`` per chapter
  (``UTT_ID TEXT`` per line).
- LibriTTS(-R): ``SPEAKER_CHAPTER_X_Y.wav`` with ``.normalized.txt`` (or ``.original.txt``) beside.
- Montreal Forced Aligner output (``UTT.TextGrid`` beside the audio) becomes word and phone tiers.

Speaker = the speaker folder; ``chapter`` and ``subset`` (e.g. ``train-clean-100``) are kept.
No ``source_id`` is set: a chapter is one recording of one speaker, so grouping by speaker (the
convention's next key) already keeps a chapter's utterances on one side of a split.

Usage (on a real corpus in that layout)::

    from workbench.corpus.formats import iter_clips
    clip = next(iter_clips("LibriSpeech/dev-clean", "librispeech"))
    clip.id, clip.speaker, clip.extra["chapter"]
    # -> ('1272-128104-0000', '1272', '128104')
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from workbench.audio import AUDIO_EXTENSIONS
from workbench.corpus.formats import ReadContext, safe_id
from workbench.corpus.textgrid import read_textgrid
from workbench.corpus.types import Clip

__all__ = ["read_librispeech", "read_trans"]


def read_trans(path: Path, ctx: ReadContext) -> dict[str, str]:
    """``{utterance id: text}`` of a ``*.trans.txt`` (or LibriTTS ``*.trans.tsv``) file."""
    out = {}
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        sep = "\t" if path.name.endswith(".tsv") else None
        parts = line.split(sep, 1) if sep is None else line.split(sep)
        if len(parts) < 2 or not parts[-1].strip():
            ctx.bad_row(path, i, "expected 'UTTERANCE_ID TEXT'")
            continue
        out[parts[0].strip()] = " ".join(parts[-1].split())
    return out


def _side_text(audio: Path) -> str | None:
    for suffix in (".normalized.txt", ".original.txt", ".txt", ".lab"):
        p = audio.with_name(audio.stem + suffix)
        if p.is_file():
            return " ".join(p.read_text(encoding="utf-8", errors="replace").split()) or None
    return None


def read_librispeech(root: Path, ctx: ReadContext) -> Iterator[Clip]:
    """Stream every utterance under ``root`` (sorted), one chapter folder at a time."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        folder = Path(dirpath)
        audio_files = sorted(f for f in filenames if f.lower().endswith(AUDIO_EXTENSIONS))
        if not audio_files:
            continue
        texts: dict[str, str] = {}
        for f in sorted(filenames):
            if f.endswith(".trans.txt"):
                texts.update(read_trans(folder / f, ctx))
        rel = folder.relative_to(root).parts
        speaker = rel[-2] if len(rel) >= 2 else None
        chapter = rel[-1] if rel else None
        subset = rel[-3] if len(rel) >= 3 else None
        for f in audio_files:
            audio = folder / f
            utt = audio.stem
            transcript = texts.get(utt) or _side_text(audio)
            if transcript is None:
                ctx.bad_row(audio, None, "no transcript (not in the chapter's .trans.txt, no .normalized.txt)")
                continue
            tiers = {}
            tg = audio.with_suffix(".TextGrid")
            if tg.is_file():
                try:
                    tiers, _ = read_textgrid(tg, fold_phones=ctx.fold_phones, unknown=ctx.unknown_phones)
                except ValueError as e:
                    ctx.bad_row(tg, None, f"{e} (clip kept without tiers)", stage="textgrid")
                    ctx.errors[-1]["action"] = "kept clip without tiers"
            spk = speaker or utt.replace("_", "-").split("-")[0]
            yield Clip(safe_id(utt), str(audio.resolve()), "speech", speaker=spk, transcript=transcript, tiers=tiers,
                       extra={"chapter": chapter, "subset": subset})
