"""Forced alignments kept in the user cache dir, so a clip is aligned once per machine.

pocketsphinx needs 10-20 s of one core per minute of speech; ``workbench demo`` and a user re-segmenting the
same recordings would otherwise pay that on every run. An entry is keyed by the audio file's bytes, the
transcript and the aligner's settings (dictionary handling, score threshold, decoder options and the
pocketsphinx version), so a changed clip, transcript or setting aligns again. The folder is
``$WORKBENCH_CACHE_DIR`` or the platform's user cache dir (as for the converted Whisper weights), under
``alignments/``; ``WORKBENCH_ALIGN_CACHE=0`` turns it off. Writes are atomic; an unreadable entry is ignored
(aligned again and rewritten).

Shipped entries: ``workbench/corpus/data/alignments_*.json.gz`` holds the alignments of recordings every install
has (the naplib sample's ten audiobook excerpts, as ``workbench neuro naplib`` writes them), made by this aligner
(``python -m workbench.corpus.align_cache --ship NAME CORPUS``) and read after the user cache dir: a fresh clone's
demo does not spend ~7 s of a core per excerpt re-deriving them. They are keyed like any entry, so another
pocketsphinx, transcript or resampler misses them and aligns as before (``WORKBENCH_ALIGN_CACHE=0`` skips them
too); tests/test_align.py re-aligns one and compares.

Example
-------
>>> from workbench.corpus.align import AlignResult
>>> from workbench.corpus.types import Segment
>>> r = AlignResult([Segment(0.1, 0.4, "hello")], [Segment(0.1, 0.2, "HH")])
>>> from_json(to_json(r)) == r
True
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["entry_key", "load", "save", "to_json", "from_json", "shipped", "ship"]

SHIPPED = Path(__file__).parent / "data"


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


@functools.lru_cache(maxsize=1)
def shipped() -> dict[str, dict]:
    """The entries shipped with the package (key -> entry), from every ``data/alignments_*.json.gz``."""
    entries = {}
    for path in sorted(SHIPPED.glob("alignments_*.json.gz")):
        try:
            entries.update(json.loads(gzip.decompress(path.read_bytes())))
        except (OSError, ValueError) as e:  # a damaged package file costs time (align again), never results
            logger.warning("ignoring shipped alignments %s (%s)", path, e)
    return entries


def load(key: str):
    """The cached :class:`~workbench.corpus.align.AlignResult` of ``key`` (user cache dir, then the shipped
    entries), or None."""
    root = _root()
    if root is None:
        return None
    path = root / f"{key}.json"
    if not path.is_file():
        doc = shipped().get(key)
        return from_json(doc) if doc is not None else None
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


def ship(name: str, corpus, out_dir: str | os.PathLike = SHIPPED, jobs: int = 0) -> Path:
    """Write ``out_dir/alignments_NAME.json.gz`` with the alignments of every clip of ``corpus`` that has a
    transcript (from the cache where it has them, else aligned now, ``jobs`` clips side by side; a clip that
    fails to align raises). Example: ``python -m workbench.corpus.align_cache --ship naplib
    work/naplib/source/corpus`` after ``workbench neuro naplib --out work/naplib/source``."""
    from workbench.atomic import atomic_path
    from workbench.corpus.align import _results

    todo = [c for c in corpus if c.transcript]
    entries = {}
    for clip, key, result in _results(todo, corpus, None, jobs or (os.cpu_count() or 1), verbose=True):
        if isinstance(result, Exception):
            raise result
        entries[key] = to_json(result)
    path = Path(out_dir) / f"alignments_{name}.json.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # mtime 0: the same alignments give the same bytes (no git churn)
        Path(tmp).write_bytes(gzip.compress(json.dumps(entries, sort_keys=True).encode(), mtime=0))
    return path


if __name__ == "__main__":
    import argparse

    from workbench.corpus import load_corpus

    parser = argparse.ArgumentParser(description="write shipped alignments (see the module doc)")
    parser.add_argument("--ship", nargs=2, metavar=("NAME", "CORPUS"), required=True)
    args = parser.parse_args()
    print(ship(args.ship[0], load_corpus(args.ship[1])))
