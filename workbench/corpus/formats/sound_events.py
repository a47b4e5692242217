"""Sound-event collections described by a metadata CSV: ESC-50, UrbanSound8K and FSD50K.

The class label becomes the clip's ``domain`` (so ``--concept domain=dog_bark`` and
``--target domain`` work) and is kept as ``label``; folds are kept as ``fold`` so splits can
follow them; the recording a clip was cut from is ``source_id`` (ESC-50 ``src_file``,
UrbanSound8K ``fsID``), which the grouping convention puts first, so cuts of one recording never
sit on both sides of a split.

- **ESC-50**: ``meta/esc50.csv`` (filename, fold, target, category, esc10, src_file, take), ``audio/``.
- **UrbanSound8K**: ``metadata/UrbanSound8K.csv`` (slice_file_name, fsID, start, end, salience,
  fold, classID, class), ``audio/fold<N>/``.
- **FSD50K**: ``FSD50K.ground_truth/dev.csv`` and ``eval.csv`` (fname, labels, mids[, split]),
  ``FSD50K.dev_audio/`` and ``FSD50K.eval_audio/``; multi-label: ``domain`` = the first label,
  ``labels`` = all of them.

Usage (on a real corpus in that layout)::

    from workbench.corpus.formats import iter_clips
    clip = next(iter_clips("ESC-50-master", "esc50"))
    clip.domain, clip.extra["fold"], clip.extra["source_id"]
    # -> ('dog', 1, '100032')
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from workbench.corpus.formats import ReadContext, safe_id
from workbench.corpus.types import Clip

__all__ = ["read_esc50", "read_urbansound8k", "read_fsd50k"]


def _rows(table: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` of a CSV with a header; a missing required column fails naming the file."""
    if not table.is_file():
        raise FileNotFoundError(f"{table}: metadata table not found")
    with open(table, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{table}: column(s) {', '.join(missing)} missing from the header {reader.fieldnames}")
        for line, row in enumerate(reader, 2):
            yield line, row


def _int(v: str | None) -> int | str | None:
    try:
        return int(v) if v not in (None, "") else None
    except ValueError:
        return v


def _event_clip(ctx: ReadContext, table: Path, line: int, audio: Path, label: str | None, **extra) -> Clip | None:
    if not (label or "").strip():
        ctx.bad_row(table, line, "empty class label")
        return None
    found = ctx.audio_file(audio, table, line)
    if found is None:
        return None
    label = label.strip()
    return Clip(safe_id(audio.stem), str(found.resolve()), label,
                extra={"label": label, **{k: v for k, v in extra.items() if v is not None}})


def read_esc50(root: Path, ctx: ReadContext) -> Iterator[Clip]:
    """Stream ESC-50 clips in table order."""
    table = root / "meta" / "esc50.csv"
    for line, row in _rows(table, ("filename", "fold", "category")):
        clip = _event_clip(ctx, table, line, root / "audio" / row["filename"], row["category"],
                           fold=_int(row["fold"]), source_id=row.get("src_file") or None,
                           esc10=row.get("esc10") == "True" if row.get("esc10") else None)
        if clip is not None:
            yield clip


def read_urbansound8k(root: Path, ctx: ReadContext) -> Iterator[Clip]:
    """Stream UrbanSound8K slices in table order."""
    table = root / "metadata" / "UrbanSound8K.csv"
    for line, row in _rows(table, ("slice_file_name", "fold", "class")):
        audio = root / "audio" / f"fold{row['fold']}" / row["slice_file_name"]
        clip = _event_clip(ctx, table, line, audio, row["class"], fold=_int(row["fold"]),
                           source_id=row.get("fsID") or None, salience=_int(row.get("salience")))
        if clip is not None:
            yield clip


def read_fsd50k(root: Path, ctx: ReadContext) -> Iterator[Clip]:
    """Stream FSD50K dev then eval clips."""
    gt = root / "FSD50K.ground_truth"
    want = ctx.options.get("split")
    for part in ("dev", "eval"):
        table = gt / f"{part}.csv"
        if not table.is_file():
            continue
        for line, row in _rows(table, ("fname", "labels")):
            labels = [x for x in (row["labels"] or "").split(",") if x]
            split = row.get("split") or part
            if want and split not in ([want] if isinstance(want, str) else want):
                continue
            clip = _event_clip(ctx, table, line, root / f"FSD50K.{part}_audio" / f"{row['fname']}.wav",
                               labels[0] if labels else None, labels=",".join(labels), split=split)
            if clip is not None:
                yield clip
