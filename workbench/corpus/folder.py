"""Build a corpus from a folder tree of audio files.

Layout rules:

- **domain** = the first sub-folder under the root (``root/music/a.flac`` -> "music");
  files directly in the root get ``default_domain`` ("unknown").
- **transcript** = a sibling ``<stem>.txt`` or ``<stem>.lab`` (whitespace collapsed).
- **tiers** = a sibling ``<stem>.TextGrid`` (any case), read with praatio.
- **speaker** = :func:`infer_speaker`: the file-name prefix when the stem looks like a
  corpus utterance id (``1272-128104-0000`` -> "1272", ``p225_001`` -> "p225"), else the
  parent folder when the file sits at least two levels below the domain folder
  (``speech/dr1/fcjf0/sa1.wav`` -> "fcjf0"), else ``None``.
- **id** = the path relative to the root without extension, "/" -> "_".

Only the header of each file is read here (for ``duration_s``); ``workbench corpus build``
decodes every file once to catch corrupt audio.

Example
-------
>>> corpus = scan_folder("data/")                # doctest: +SKIP
>>> corpus.summary()["domains"]                   # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path

from workbench.audio import AUDIO_EXTENSIONS, AudioLoadError, audio_info
from workbench.corpus.textgrid import check_extent, read_textgrid
from workbench.corpus.types import Clip, Corpus

logger = logging.getLogger(__name__)

__all__ = ["scan_folder", "infer_speaker", "clip_id_from_path"]

# A speaker prefix must contain a digit and be followed by -/_ and more digits:
# LibriSpeech "1272-128104-0000", VCTK "p225_001", "spk03_utt12"; not "cold_corpus3".
_SPEAKER_PREFIX = re.compile(r"^([A-Za-z]*\d+[A-Za-z]*)[-_][A-Za-z]*\d")


def clip_id_from_path(rel_path: str) -> str:
    """``"speech/jfk.flac"`` -> ``"speech_jfk"``."""
    p = rel_path.replace("\\", "/")
    stem = p.rsplit(".", 1)[0] if "." in p.rsplit("/", 1)[-1] else p
    return stem.replace("/", "_")


def infer_speaker(rel_path: str | os.PathLike, use_folders: bool = True) -> str | None:
    """Speaker label guessed from a path (see the module docstring); ``None`` when unsure."""
    p = Path(rel_path)
    m = _SPEAKER_PREFIX.match(p.stem)
    if m:
        return m.group(1)
    if use_folders and len(p.parts) >= 3:  # domain/<speaker>/file, domain/<group>/<speaker>/file
        return p.parent.name
    return None


def _sibling(path: Path, suffixes: tuple[str, ...]) -> Path | None:
    for suf in suffixes:
        cand = path.with_suffix(suf)
        if cand.is_file():
            return cand
    lower = {s.lower() for s in suffixes}
    for cand in path.parent.glob(path.stem + ".*"):  # case-insensitive fallback (x.textgrid)
        if cand.suffix.lower() in lower and cand.is_file():
            return cand
    return None


def read_transcript(path: Path) -> str | None:
    """Text of a .txt/.lab file with whitespace collapsed (``None`` if empty)."""
    text = " ".join(path.read_text(encoding="utf-8", errors="replace").split())
    return text or None


def scan_folder(root: str | os.PathLike, *, fold_phones: bool = True, strict: bool = False,
                errors: list[dict] | None = None, default_domain: str = "unknown",
                unknown_phones: Counter | None = None) -> Corpus:
    """Corpus of every audio file under ``root`` (sorted, hidden entries skipped).

    Files whose header cannot be read (corrupt, empty, wrong type) raise
    :class:`~workbench.audio.AudioLoadError` when ``strict``; otherwise they are logged,
    appended to ``errors`` and left out. A broken TextGrid keeps the clip without tiers.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    clips: list[Clip] = []
    seen: set[str] = set()
    unknown_phones = Counter() if unknown_phones is None else unknown_phones
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root)
            try:
                sr, _, duration = audio_info(path)
            except AudioLoadError as e:
                if strict:
                    raise
                logger.warning("skipping %s", e)
                if errors is not None:
                    errors.append({"path": str(path), "stage": "audio", "error": e.problem, "action": "skipped"})
                continue
            tiers = {}
            tg = _sibling(path, (".TextGrid", ".textgrid"))
            if tg is not None:
                try:
                    tiers, tg_end = read_textgrid(tg, fold_phones=fold_phones, unknown=unknown_phones)
                    check_extent(tiers, duration, path, tg, end_s=tg_end)
                except ValueError as e:
                    if strict:
                        raise
                    tiers = {}
                    logger.warning("ignoring TextGrid: %s", e)
                    if errors is not None:
                        errors.append({"path": str(tg), "stage": "textgrid", "error": str(e),
                                       "action": "kept clip without tiers"})
            lab = _sibling(path, (".txt", ".lab"))
            extra = {"sample_rate": sr}
            if tg is not None and tiers:
                extra["alignment_source"] = "textgrid"
            clip_id = clip_id_from_path(rel.as_posix())
            if clip_id in seen:  # a.wav next to a.flac: keep both, tell them apart by extension
                clip_id = f"{clip_id}_{path.suffix.lstrip('.').lower()}"
            seen.add(clip_id)
            clips.append(Clip(
                id=clip_id, path=rel.as_posix(),
                domain=rel.parts[0] if len(rel.parts) > 1 else default_domain,
                speaker=infer_speaker(rel), transcript=read_transcript(lab) if lab else None,
                tiers=tiers, duration_s=round(duration, 6), extra=extra,
            ))
    if not clips:
        logger.warning("%s: no audio files found (looked for %s)", root, ", ".join(AUDIO_EXTENSIONS))
    return Corpus(clips, root=root)
