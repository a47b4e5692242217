"""Hugging Face ``datasets``: a folder written by ``save_to_disk``, an ``audiofolder`` (audio files
plus ``metadata.csv`` with a ``file_name`` column), or a hub id (users with internet; streamed).

Columns are named with ``ctx.options`` (``audio_column``, ``text_column``, ``speaker_column``,
``label_column``, ``id_column``) or guessed: the first ``Audio`` column; ``text`` /
``sentence`` / ``transcription`` / ``transcript`` / ``normalized_text``; ``speaker_id`` /
``speaker`` / ``client_id``; ``label`` / ``category`` / ``class``. A ``ClassLabel`` is stored by
name. A label column becomes the clip's ``domain`` (and ``label``); rows without one are
``speech`` when they have text, else ``unknown``. Audio is never decoded here: embedded bytes
are written unchanged to ``ctx.audio_dir`` (resumable: a file already there with the same size
is kept), files on disk are referenced. A ``DatasetDict`` is read split by split
(``ctx.options["split"]`` limits them); the split is kept as ``split``.

Usage (on a real corpus in that layout)::

    from workbench.corpus.formats import iter_clips, ReadContext
    ctx = ReadContext(audio_dir=Path("work/corpus/audio"), options={"text_column": "sentence"})
    clips = list(iter_clips("work/my_hf_dataset", "hf", ctx))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from workbench.atomic import write_bytes
from workbench.audio import AUDIO_EXTENSIONS
from workbench.corpus.formats import ReadContext, safe_id
from workbench.corpus.types import Clip

__all__ = ["read_hf", "load_hf"]

_GUESSES = {
    "text_column": ("text", "sentence", "transcription", "transcript", "normalized_text", "raw_text"),
    "speaker_column": ("speaker_id", "speaker", "client_id"),
    "label_column": ("label", "category", "class", "labels"),
    "id_column": ("id", "utterance_id", "file_id", "segment_id"),
}


def load_hf(src: str | Path, ctx: ReadContext) -> dict[str, Any]:
    """``{split: dataset}`` for a saved dataset, an audiofolder or a hub id (streaming)."""
    import datasets

    root = Path(src)
    want = ctx.options.get("split")
    if root.is_dir() and (root / "metadata.csv").is_file() and not (root / "dataset_info.json").is_file():
        loaded = datasets.load_dataset("audiofolder", data_dir=str(root))
    elif root.is_dir():
        loaded = datasets.load_from_disk(str(root))
    else:  # a hub id: needs internet; streamed so nothing is downloaded whole
        loaded = datasets.load_dataset(str(src), split=want, streaming=True)
        return {want or "train": loaded}
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        names = [want] if isinstance(want, str) else list(want or loaded.keys())
        missing = [n for n in names if n not in loaded]
        if missing:
            raise ValueError(f"{src}: no split(s) {missing}; the dataset has {list(loaded.keys())}")
        return {n: loaded[n] for n in names}
    return {str(want or "train"): loaded}


def _column(features: dict, ctx: ReadContext, key: str, src: Any) -> str | None:
    given = ctx.options.get(key)
    if given:
        if given not in features:
            raise ValueError(f"{src}: column {given!r} ({key.replace('_', '-')}) not in {list(features)}")
        return given
    return next((c for c in _GUESSES[key] if c in features), None)


def _audio_column(features: dict, ctx: ReadContext, src: Any) -> str:
    import datasets

    given = ctx.options.get("audio_column")
    if given and given not in features:
        raise ValueError(f"{src}: audio column {given!r} not in {list(features)}")
    col = given or next((c for c, f in features.items() if isinstance(f, datasets.Audio)), None)
    if col is None:
        col = "audio" if "audio" in features else None
    if col is None:
        raise ValueError(f"{src}: no Audio column among {list(features)}; name it with --audio-column")
    return col


def _label_name(feature: Any, value: Any) -> str | None:
    import datasets

    if value is None:
        return None
    if isinstance(feature, datasets.ClassLabel):
        return feature.int2str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or None
    return str(value)


def _sniff_suffix(data: bytes) -> str:
    """File extension for embedded audio without a usable name (libsndfile reads the header)."""
    import io

    import soundfile as sf

    try:
        fmt = sf.info(io.BytesIO(data)).format
    except Exception:  # unreadable bytes: build_corpus reports the file when it decodes it
        return ".wav"
    return {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3", "AIFF": ".aiff"}.get(fmt, ".wav")


def _audio_path(audio: Any, clip_id: str, ctx: ReadContext, src: Any, line: int) -> Path | None:
    if not isinstance(audio, dict):
        ctx.bad_row(src, line, f"audio cell is {type(audio).__name__}, expected bytes or a path")
        return None
    data, path = audio.get("bytes"), audio.get("path")
    if data:
        if ctx.audio_dir is None:
            raise ValueError(f"{src}: the dataset embeds audio bytes; pass an output folder to write them to")
        suffix = Path(path or "").suffix.lower()
        if suffix not in AUDIO_EXTENSIONS:
            suffix = _sniff_suffix(data)
        target = Path(ctx.audio_dir) / f"{clip_id}{suffix}"
        if not (target.is_file() and target.stat().st_size == len(data)):
            write_bytes(target, data)
        return target
    if path and Path(path).is_file():
        return Path(path)
    ctx.bad_row(src, line, f"no audio bytes and no file at {path!r}")
    return None


def read_hf(src: Path, ctx: ReadContext) -> Iterator[Clip]:
    """Stream the rows of every selected split as clips (row order)."""
    import datasets

    for split, ds in load_hf(src, ctx).items():
        features = dict(ds.features or {})
        audio_col = _audio_column(features, ctx, src)
        if isinstance(features.get(audio_col), datasets.Audio):
            ds = ds.cast_column(audio_col, datasets.Audio(decode=False))
        cols = {k: _column(features, ctx, k, src) for k in _GUESSES}
        for i, row in enumerate(ds):
            rid = row.get(cols["id_column"]) if cols["id_column"] else None
            stem = Path((row.get(audio_col) or {}).get("path") or "").stem if isinstance(row.get(audio_col), dict) else ""
            clip_id = safe_id(f"{split}_{rid if rid is not None else (stem or i)}")
            audio = _audio_path(row.get(audio_col), clip_id, ctx, src, i)
            if audio is None:
                continue
            text = row.get(cols["text_column"]) if cols["text_column"] else None
            label = _label_name(features.get(cols["label_column"]), row.get(cols["label_column"])) \
                if cols["label_column"] else None
            speaker = row.get(cols["speaker_column"]) if cols["speaker_column"] else None
            extra = {"split": split, "hf_row": i}
            if label:
                extra["label"] = label
            yield Clip(clip_id, str(audio.resolve()), (label.split(",")[0] if label else
                                                       ("speech" if text else "unknown")),
                       speaker=None if speaker is None else str(speaker),
                       transcript=" ".join(str(text).split()) if text else None, extra=extra)
