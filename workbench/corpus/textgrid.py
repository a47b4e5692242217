"""Praat TextGrids in and out (via praatio).

Tier names map case-insensitively to the corpus tiers: "words"/"word"/"orthography"
-> ``"words"``, "phones"/"phone"/"phonemes"/"segments" -> ``"phones"``; MFA's
multi-speaker names ("michael - words") map by their suffix. Other interval tiers keep
their (lower-cased) name; point tiers are skipped. Empty intervals are not imported
(``includeEmptyIntervals=False``): a gap is "no label". With ``fold_phones=True`` the
phone tier is folded to the 39-phone set and its gaps become ``"sil"``
(see :mod:`workbench.corpus.phones`).

Example
-------
>>> tiers, end_s = read_textgrid("speech/acoustic_corpus.TextGrid", fold_phones=True)  # doctest: +SKIP
>>> save_textgrids(corpus, "work/textgrids")                        # doctest: +SKIP
>>> load_corpus("work/textgrids").clips[0].tiers.keys()             # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path

from workbench.atomic import atomic_path
from workbench.corpus.phones import fold_segments
from workbench.corpus.types import Clip, Corpus, Segment

logger = logging.getLogger(__name__)

__all__ = ["read_textgrid", "write_textgrid", "save_textgrids", "tier_key", "check_extent", "EXTENT_TOLERANCE_S"]

#: How far (s) tiers may reach past the end of their audio: rounding, and MFA's 10 ms frame grid.
EXTENT_TOLERANCE_S = 0.1
# praatio's parser drops the sign of a time ("xmin = -0.5" is read as 0.5), so negative times are
# found in the text first. Long format: "xmin = -0.5"; short format: a line holding just a number.
_NEGATIVE_TIME = re.compile(r"^\s*(?:(?:xmin|xmax|number|time)\s*=\s*)?(-\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")

_WORD_NAMES = {"words", "word", "orthography", "ortho", "text"}
_PHONE_NAMES = {"phones", "phone", "phonemes", "phoneme", "segments", "phonetic"}


def tier_key(name: str) -> str:
    """Corpus tier name for a TextGrid tier name ("Words" -> "words", "spk - phones" -> "phones")."""
    n = name.strip().lower()
    last = n.rsplit(" - ", 1)[-1].strip()
    if n in _WORD_NAMES or last in _WORD_NAMES:
        return "words"
    if n in _PHONE_NAMES or last in _PHONE_NAMES:
        return "phones"
    return n


def read_textgrid(path: str | os.PathLike, fold_phones: bool = False, unknown: Counter | None = None
                  ) -> tuple[dict[str, list[Segment]], float]:
    """Read interval tiers as ``{tier: [Segment]}`` plus the TextGrid's end time (s).

    Raises ``ValueError`` naming the file if it is missing or not a parseable TextGrid.
    ``unknown`` collects phone labels that folding could not map (when ``fold_phones``).
    """
    from praatio import textgrid

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: TextGrid not found")
    _refuse_negative_times(p)
    try:
        tg = textgrid.openTextgrid(str(p), includeEmptyIntervals=False)
    except Exception as e:  # praatio raises several types for malformed files
        raise ValueError(f"{p}: not a readable TextGrid ({type(e).__name__}: {e})") from e
    tiers: dict[str, list[Segment]] = {}
    for name in tg.tierNames:
        tier = tg.getTier(name)
        if not isinstance(tier, textgrid.IntervalTier):
            logger.debug("%s: skipping point tier %r", p, name)
            continue
        key = tier_key(name)
        if key in tiers:
            logger.warning("%s: more than one %r tier; keeping the first (%r ignored)", p, key, name)
            continue
        segs = [Segment(float(e.start), float(e.end), str(e.label).strip()) for e in tier.entries
                if str(e.label).strip()]
        if key == "phones" and fold_phones:
            segs = fold_segments(segs, end_s=float(tg.maxTimestamp), unknown=unknown)
        tiers[key] = sorted(segs)
    return tiers, float(tg.maxTimestamp)


def _refuse_negative_times(path: Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        try:
            text = path.read_text(encoding="utf-16")  # Praat saves non-ASCII TextGrids as UTF-16
        except (UnicodeDecodeError, UnicodeError):
            return  # praatio reports what it cannot read
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _NEGATIVE_TIME.match(line)
        if m:
            raise ValueError(f"{path}:{lineno}: negative time {m.group(1)} ({line.strip()!r}); times must be >= 0")


def check_extent(tiers: dict[str, list[Segment]], duration_s: float | None, audio: str | os.PathLike,
                 source: str | os.PathLike, end_s: float | None = None,
                 tolerance_s: float = EXTENT_TOLERANCE_S) -> None:
    """Refuse tiers that do not fit their audio: ``ValueError`` naming both files.

    ``source`` is where the tiers came from (a TextGrid, or ``manifest.jsonl:LINE``), ``end_s``
    a TextGrid's declared end (xmax). Tiers may not end more than ``tolerance_s`` after the audio
    does; a TextGrid's xmax is its audio's duration, so one ending long before the audio (more
    than ``tolerance_s`` and 10 %) belongs to another file too. ``duration_s`` None skips the check.
    """
    if not duration_s:
        return
    last = max((seg.end_s for segs in tiers.values() for seg in segs), default=0.0)
    first = min((seg.start_s for segs in tiers.values() for seg in segs), default=0.0)
    if first < 0:
        raise ValueError(f"{source}: a segment starts at {first:g} s (negative) in the tiers of {audio}")
    reach = max(last, end_s or 0.0)
    if reach > duration_s + tolerance_s:
        what = f"ends at {reach:.3f} s" if end_s is None or last >= end_s else f"declares xmax {end_s:.3f} s"
        raise ValueError(f"{source} {what} but its audio {audio} is {duration_s:.3f} s long: "
                         "the labels belong to another (longer) file")
    if end_s is not None and end_s < duration_s - max(tolerance_s, 0.1 * duration_s):
        raise ValueError(f"{source} declares xmax {end_s:.3f} s but its audio {audio} is {duration_s:.3f} s long: "
                         "the labels belong to another (shorter) file")


def write_textgrid(clip: Clip, path: str | os.PathLike, end_s: float | None = None) -> Path:
    """Write ``clip.tiers`` as a long-format TextGrid, atomically. Returns the path."""
    from praatio import textgrid
    from praatio.utilities.constants import Interval

    path = Path(path)
    ends = [s.end_s for segs in clip.tiers.values() for s in segs]
    end = max([end_s or 0.0, clip.duration_s or 0.0, *ends]) or 1e-3
    tg = textgrid.Textgrid()
    for name, segs in clip.tiers.items():
        entries = [Interval(s.start_s, s.end_s, s.label) for s in segs if s.end_s > s.start_s]
        tg.addTier(textgrid.IntervalTier(name, entries, 0.0, end))
    with atomic_path(path) as tmp:
        tg.save(str(tmp), format="long_textgrid", includeBlankSpaces=True, minTimestamp=0.0, maxTimestamp=end,
                reportingMode="silence")
    return path


def save_textgrids(corpus: Corpus, out_dir: str | os.PathLike, manifest: bool = True) -> list[Path]:
    """Write one ``<clip id>.TextGrid`` per clip with tiers into ``out_dir``.

    With ``manifest=True`` also writes ``out_dir/manifest.jsonl`` whose rows point at the
    TextGrids (``"alignment"``) instead of carrying tiers inline, with absolute audio paths,
    so ``load_corpus(out_dir)`` reads the corpus back. Returns the TextGrid paths.
    """
    from workbench.names import safe_component

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows: list[Clip] = []
    for clip in corpus:
        d = clip.to_dict()
        d.pop("tiers", None)
        d["path"] = str(corpus.audio_path(clip).resolve())
        if clip.tiers:
            tg_path = write_textgrid(clip, out / f"{safe_component(clip.id)}.TextGrid")  # ../x stays in out_dir
            written.append(tg_path)
            d["alignment"] = tg_path.name
        rows.append(Clip.from_dict(d))
    if manifest:
        Corpus(rows, root=out).save(out / "manifest.jsonl")
    return written
