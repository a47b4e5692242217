"""Readers for the corpus layouts researchers already have, one module per layout.

Every reader turns a source folder (or a Hugging Face dataset) into a stream of
:class:`~workbench.corpus.types.Clip` with absolute audio paths, reading metadata only
(audio is decoded once, later, by :func:`workbench.corpus.build_corpus`):

==============  ===========================================================================
format          layout
==============  ===========================================================================
``timit``       ``TRAIN|TEST/DR*/SPEAKER/UTT.WAV`` (NIST SPHERE) + ``.PHN``/``.WRD``/``.TXT``
``librispeech`` ``SPEAKER/CHAPTER/*.flac`` + ``SPEAKER-CHAPTER.trans.txt`` (LibriTTS: per-file
                ``.normalized.txt``); optional MFA ``.TextGrid`` beside each file
``commonvoice`` ``*.tsv`` (``client_id``, ``path``, ``sentence``, ...) + ``clips/``
``fleurs``      ``{train,dev,test}.tsv`` without header + ``audio/{split}/``
``esc50``       ``meta/esc50.csv`` + ``audio/``
``urbansound8k`` ``metadata/UrbanSound8K.csv`` + ``audio/fold*/``
``fsd50k``      ``FSD50K.ground_truth/{dev,eval}.csv`` + ``FSD50K.{dev,eval}_audio/``
``musan``       ``music|noise|speech/<collection>/*.wav``
``wham``        ``tr|cv|tt/*.wav`` (noise only)
``hf``          a ``datasets`` folder (``save_to_disk``), an ``audiofolder`` with
                ``metadata.csv``, or a hub id (needs internet)
==============  ===========================================================================

Manifests and plain folder trees keep their readers in :mod:`workbench.corpus.manifest` and
:mod:`workbench.corpus.folder` (formats ``manifest`` and ``folder``).

A bad row (missing audio file, empty label) is reported with its file and line and skipped, or
raises with ``strict``; a table that lacks a required column fails at once, naming the file and
the column.

Example
-------
>>> detect_format("data/TIMIT")                                  # doctest: +SKIP
'timit'
>>> clips = list(iter_clips("data/ESC-50", "esc50"))            # doctest: +SKIP
>>> clips[0].domain, clips[0].extra["fold"]                       # doctest: +SKIP
('dog', 1)
"""
from __future__ import annotations

import logging
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from workbench.corpus.types import Clip

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "ReadContext", "detect_format", "iter_clips", "subset", "safe_id"]

#: every format ``workbench corpus build --format`` accepts
FORMATS = ("manifest", "folder", "timit", "librispeech", "commonvoice", "fleurs", "esc50", "urbansound8k",
           "fsd50k", "musan", "wham", "hf")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(text: str) -> str:
    """A clip id usable as one file name: runs of other characters become ``_``.

    >>> safe_id("common_voice_en_1.mp3"), safe_id("a/b c")
    ('common_voice_en_1.mp3', 'a_b_c')
    """
    out = _UNSAFE.sub("_", str(text)).strip("._") or "clip"
    return out


@dataclass
class ReadContext:
    """What a reader needs besides the source: error policy and format options.

    ``errors`` collects one dict per skipped row (``path``, ``line``, ``stage``, ``error``,
    ``action``); ``strict`` raises instead. ``options`` holds format-specific settings
    (``split``, ``audio_column``, ``text_column``, ``speaker_column``, ``label_column``);
    ``audio_dir`` is where readers of embedded audio (``hf``) write files.
    """

    strict: bool = False
    fold_phones: bool = True
    errors: list[dict] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    audio_dir: Path | None = None
    unknown_phones: Counter = field(default_factory=Counter)

    def bad_row(self, path: str | os.PathLike, line: int | None, problem: str, stage: str = "metadata") -> None:
        """Report one bad row (raise with ``strict``)."""
        where = f"{path}" + (f", line {line}" if line is not None else "")
        if self.strict:
            raise ValueError(f"{where}: {problem}")
        logger.warning("skipping %s: %s", where, problem)
        self.errors.append({"path": str(path), "line": line, "stage": stage, "error": problem, "action": "skipped"})

    def audio_file(self, path: Path, table: str | os.PathLike, line: int | None) -> Path | None:
        """``path`` when it is a file, else a reported bad row and ``None``."""
        if path.is_file():
            return path
        self.bad_row(table, line, f"audio file not found: {path}")
        return None


def _has(root: Path, *names: str) -> bool:
    return any((root / n).exists() for n in names)


def _find_suffix(root: Path, suffixes: tuple[str, ...], max_dirs: int = 400) -> bool:
    """True when a file ending in one of ``suffixes`` (any case) is found in the first ``max_dirs`` folders."""
    for i, (_, dirnames, filenames) in enumerate(os.walk(root)):
        dirnames.sort()
        if any(f.lower().endswith(suffixes) for f in filenames):
            return True
        if i >= max_dirs:
            break
    return False


def detect_format(src: str | os.PathLike) -> str:
    """The layout of ``src`` where it is unambiguous; ``folder`` for any other folder tree.

    MUSAN and WHAM! look like plain folder trees, so they are never guessed: name them with
    ``--format``. A string that is no path but looks like ``owner/name`` is a hub id (``hf``).
    """
    root = Path(src)
    if root.is_file():
        if root.suffix == ".jsonl":
            return "manifest"
        raise ValueError(f"{root}: expected a folder, a manifest .jsonl or a Hugging Face dataset id")
    if not root.exists():
        if re.fullmatch(r"[\w.-]+/[\w.-]+", str(src)) and not str(src).startswith("."):
            return "hf"
        raise FileNotFoundError(f"{root}: no such folder or manifest")
    if (root / "manifest.jsonl").is_file():
        return "manifest"
    if _has(root, "dataset_info.json", "dataset_dict.json", "state.json"):
        return "hf"
    if (root / "metadata.csv").is_file() and "file_name" in (root / "metadata.csv").open().readline():
        return "hf"
    if (root / "meta" / "esc50.csv").is_file():
        return "esc50"
    if (root / "metadata" / "UrbanSound8K.csv").is_file():
        return "urbansound8k"
    if (root / "FSD50K.ground_truth").is_dir():
        return "fsd50k"
    if (root / "clips").is_dir() and any(p.suffix == ".tsv" for p in root.iterdir()):
        return "commonvoice"
    if (root / "audio").is_dir() and any(p.suffix == ".tsv" for p in root.iterdir()):
        return "fleurs"
    if _find_suffix(root, (".phn",)):
        return "timit"
    if _find_suffix(root, (".trans.txt", ".normalized.txt")):
        return "librispeech"
    return "folder"


def _reader(fmt: str) -> Callable[[Path, ReadContext], Iterator[Clip]]:
    if fmt == "timit":
        from workbench.corpus.formats.timit import read_timit as f
    elif fmt == "librispeech":
        from workbench.corpus.formats.librispeech import read_librispeech as f
    elif fmt in ("commonvoice", "fleurs"):
        from workbench.corpus.formats import speech_tables

        f = speech_tables.read_commonvoice if fmt == "commonvoice" else speech_tables.read_fleurs
    elif fmt in ("esc50", "urbansound8k", "fsd50k"):
        from workbench.corpus.formats import sound_events

        f = getattr(sound_events, f"read_{fmt}")
    elif fmt in ("musan", "wham"):
        from workbench.corpus.formats import noise

        f = getattr(noise, f"read_{fmt}")
    elif fmt == "hf":
        from workbench.corpus.formats.hf import read_hf as f
    else:
        raise ValueError(f"unknown corpus format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return f


def iter_clips(src: str | os.PathLike, fmt: str = "auto", ctx: ReadContext | None = None) -> Iterator[Clip]:
    """Stream the clips of ``src`` read as ``fmt`` (``auto``: :func:`detect_format`).

    Only the layout readers stream; ``manifest`` and ``folder`` are read by
    :func:`workbench.corpus.load_corpus` (see :func:`workbench.corpus.build_corpus`).
    """
    ctx = ctx or ReadContext()
    fmt = detect_format(src) if fmt == "auto" else fmt
    if fmt in ("manifest", "folder"):
        raise ValueError(f"{src}: format {fmt!r} is read by workbench.corpus.load_corpus, not streamed")
    root = Path(src)
    if fmt != "hf" and not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder (format {fmt})")
    seen: set[str] = set()
    for clip in _reader(fmt)(root, ctx):
        if clip.id in seen:  # two rows for one file (e.g. a clip listed in two TSVs): keep the first
            ctx.bad_row(clip.path, None, f"clip id {clip.id!r} listed twice; kept the first", stage="duplicate")
            continue
        seen.add(clip.id)
        clip.extra.setdefault("corpus_format", fmt)
        yield clip


def subset(clips: Iterable[Clip], max_clips: int | None, seed: int = 0) -> list[Clip]:
    """At most ``max_clips`` clips drawn uniformly from the stream (reservoir sampling, seeded),
    in their original order; all clips when ``max_clips`` is None. Holds only ``max_clips`` in memory.

    >>> ids = [c.id for c in subset((Clip(str(i), "x.wav") for i in range(100)), 5, seed=1)]
    >>> len(ids), ids == sorted(ids, key=int)
    (5, True)
    """
    if max_clips is None:
        return list(clips)
    if max_clips < 1:
        raise ValueError(f"--max-clips must be >= 1, got {max_clips}")
    rng = random.Random(seed)
    kept: list[tuple[int, Clip]] = []
    for i, clip in enumerate(clips):
        if i < max_clips:
            kept.append((i, clip))
        else:
            j = rng.randint(0, i)
            if j < max_clips:
                kept[j] = (i, clip)
    return [c for _, c in sorted(kept, key=lambda t: t[0])]
