"""Forced alignments kept in the user cache dir, so a clip is aligned once per machine.

pocketsphinx needs 10-20 s of one core per minute of speech; ``workbench demo`` and a user re-segmenting the
same recordings would otherwise pay that on every run. An entry is keyed by the audio file's bytes, the
transcript and the aligner's settings (dictionary handling, score threshold, decoder options and the
pocketsphinx version), so a changed clip, transcript or setting aligns again. The folder is
``$WORKBENCH_CACHE_DIR`` or the platform's user cache dir (as for the converted Whisper weights), under
``alignments/``; ``WORKBENCH_ALIGN_CACHE=0`` turns it off. Writes are atomic; an unreadable entry is ignored
(aligned again and rewritten).

Example
-------
>>> from workbench.corpus.align import AlignResult
>>> from workbench.corpus.types import Segment
>>> r = AlignResult([Segment(0.1, 0.4, "hello")], [Segment(0.1, 0.2, "HH")])
>>> from_json(to_json(r)) == r
True
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["entry_key", "load", "save", "to_json", "from_json"]


def _root() -> Path | None:
    if os.environ.get("WORKBENCH_ALIGN_CACHE", "1") == "0":
        return None
    from workbench.models.ct2_import import cache_root

    return cache_root() / "alignments"


def entry_key(path: str | os.PathLike, transcript: str, settings: str) -> str:
    """sha256 over the audio the aligner reads (16 kHz samples: not the file's bytes, which can differ in header
    fields between two writes of the same samples), the transcript and ``settings`` (the aligner's, see module doc)."""
    from workbench.audio import load_audio

    h = hashlib.sha256(load_audio(path, sr=16000).astype("float32").tobytes())
    h.update(b"\0" + transcript.encode() + b"\0" + settings.encode())
    return h.hexdigest()


def to_json(result) -> dict:
    seg = lambda s: [s.start_s, s.end_s, s.label]  # noqa: E731
    return {"words": [seg(s) for s in result.words], "phones": [seg(s) for s in result.phones], "oov": list(result.oov)}


def from_json(doc: dict):
    from workbench.corpus.align import AlignResult
    from workbench.corpus.types import Segment

    return AlignResult([Segment(*s) for s in doc["words"]], [Segment(*s) for s in doc["phones"]], list(doc["oov"]))


def load(key: str):
    """The cached :class:`~workbench.corpus.align.AlignResult` of ``key``, or None."""
    root = _root()
    path = root / f"{key}.json" if root else None
    if path is None or not path.is_file():
        return None
    try:
        return from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:  # a damaged entry: align again, it is rewritten
        logger.warning("ignoring unreadable cached alignment %s (%s)", path, e)
        return None


def save(key: str, result) -> None:
    root = _root()
    if root is None:
        return
    from workbench.atomic import write_json

    try:
        write_json(root / f"{key}.json", to_json(result))
    except OSError as e:  # a read-only cache dir costs time, not results
        logger.warning("could not cache an alignment in %s (%s)", root, e)
