"""Speech corpora described by TSV tables: Common Voice and FLEURS.

- **Common Voice**: ``train.tsv``/``dev.tsv``/``test.tsv`` (else ``validated.tsv``) with a header
  (``client_id``, ``path``, ``sentence``, ``gender``, ``age``, ``accents``, ``locale``, ...) and
  the audio in ``clips/``. Speaker = ``client_id``; the TSV's name becomes ``split``.
- **FLEURS**: ``train.tsv``/``dev.tsv``/``test.tsv`` without header (id, file name, raw
  transcription, normalised transcription, characters, samples, gender) and the audio in
  ``audio/<split>/``. The sentence id is kept as ``sentence_id`` (several speakers read one sentence).

``ctx.options["split"]`` (a name or list of names) limits the tables read.

Usage (on a real corpus in that layout)::

    from workbench.corpus.formats import iter_clips, ReadContext
    ctx = ReadContext(options={"split": "dev"})
    clips = list(iter_clips("cv-corpus/en", "commonvoice", ctx))
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Iterator

from workbench.corpus.formats import ReadContext, safe_id
from workbench.corpus.types import Clip

__all__ = ["read_commonvoice", "read_fleurs"]

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _tables(root: Path, ctx: ReadContext, default: tuple[str, ...], fallback: str | None) -> list[Path]:
    want = ctx.options.get("split")
    names = [want] if isinstance(want, str) else list(want or default)
    found = [root / f"{n}.tsv" for n in names if (root / f"{n}.tsv").is_file()]
    if not found and not want and fallback and (root / fallback).is_file():
        found = [root / fallback]
    if not found:
        raise FileNotFoundError(f"{root}: none of {', '.join(n + '.tsv' for n in names)} found")
    return found


def _need(table: Path, header: list[str] | None, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in (header or [])]
    if missing:
        raise ValueError(f"{table}: column(s) {', '.join(missing)} missing from the header {header}")


def read_commonvoice(root: Path, ctx: ReadContext) -> Iterator[Clip]:
    """Stream Common Voice clips table by table (rows in file order)."""
    for table in _tables(root, ctx, ("train", "dev", "test"), "validated.tsv"):
        with open(table, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            _need(table, reader.fieldnames, ("client_id", "path", "sentence"))
            for line, row in enumerate(reader, 2):
                if not row.get("path") or not (row.get("sentence") or "").strip():
                    ctx.bad_row(table, line, "empty 'path' or 'sentence'")
                    continue
                audio = ctx.audio_file(root / "clips" / row["path"], table, line)
                if audio is None:
                    continue
                extra = {k: row[k] for k in ("gender", "age", "accents", "locale", "variant") if row.get(k)}
                extra["split"] = table.stem
                yield Clip(safe_id(Path(row["path"]).stem), str(audio.resolve()), "speech", speaker=row["client_id"],
                           transcript=" ".join(row["sentence"].split()), extra=extra)


FLEURS_COLUMNS = ("id", "file_name", "raw_transcription", "transcription", "characters", "num_samples", "gender")


def read_fleurs(root: Path, ctx: ReadContext) -> Iterator[Clip]:
    """Stream FLEURS clips (``root`` is one language's folder)."""
    for table in _tables(root, ctx, ("train", "dev", "test"), None):
        with open(table, encoding="utf-8", newline="") as fh:
            for line, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
                if len(row) < 4:
                    ctx.bad_row(table, line, f"expected {len(FLEURS_COLUMNS)} tab-separated columns, got {len(row)}")
                    continue
                rec = dict(zip(FLEURS_COLUMNS, row))
                audio = ctx.audio_file(root / "audio" / table.stem / rec["file_name"], table, line)
                if audio is None:
                    continue
                extra = {"sentence_id": rec["id"], "split": table.stem, "raw_transcription": rec["raw_transcription"]}
                if rec.get("gender"):
                    extra["gender"] = rec["gender"]
                yield Clip(safe_id(Path(rec["file_name"]).stem), str(audio.resolve()), "speech",
                           transcript=" ".join(rec["transcription"].split()), extra=extra)
