"""Corpora from manifest.jsonl files, the :func:`load_corpus` dispatcher and :func:`build_corpus`.

A manifest has one JSON object per line. Fields: ``path`` (audio, relative to the
manifest or absolute; required), ``id`` (default: ``path`` without extension, "/" ->
"_"), ``domain`` (default "speech"), ``speaker`` (default: guessed from the file name,
see :func:`workbench.corpus.folder.infer_speaker`, else ``None``), ``transcript``,
``duration_s``, ``tiers`` inline (``{"phones": [[start, end, label], ...]}``, as written by
:meth:`Corpus.save`) and/or ``alignment`` (a TextGrid path relative to the manifest).
Inline tiers win over TextGrid tiers of the same name. Other fields (``source``,
``license``, ...) are kept in ``Clip.extra``.

Example
-------
>>> corpus = load_corpus("../shared/data")                        # doctest: +SKIP
>>> result = build_corpus("../shared/data", "work/corpus", align=True)   # doctest: +SKIP
>>> result.corpus.summary()["clips"], len(result.skipped)          # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from workbench.atomic import write_jsonl
from workbench.audio import AudioLoadError, audio_info, check_audio
from workbench.corpus.folder import clip_id_from_path, infer_speaker, scan_folder
from workbench.corpus.phones import fold_segments
from workbench.corpus.textgrid import check_extent, read_textgrid
from workbench.corpus.types import Clip, Corpus

logger = logging.getLogger(__name__)

__all__ = ["read_manifest", "load_corpus", "build_corpus", "BuildResult"]


def _fail(strict: bool, errors: list[dict] | None, entry: dict, exc: Exception) -> None:
    if strict:
        raise exc
    logger.warning("%s", exc)
    if errors is not None:
        errors.append(entry)


def _check_row(row: dict) -> None:
    """``ValueError`` saying which field or tier entry of a manifest row is malformed."""
    duration = row.get("duration_s")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                 or not duration >= 0):
        raise ValueError(f"'duration_s' must be a number of seconds >= 0, got {duration!r:.80}")
    for key in ("path", "id", "speaker", "transcript", "domain"):
        if row.get(key) is not None and not isinstance(row[key], (str, int)):
            raise ValueError(f"{key!r} must be a string, got {row[key]!r:.80}")
    tiers = row.get("tiers")
    if tiers is None:
        return
    if not isinstance(tiers, dict):
        raise ValueError(f"'tiers' must be an object {{tier: [[start_s, end_s, label], ...]}}, got {tiers!r:.80}")
    for name, segs in tiers.items():
        if not isinstance(segs, list):
            raise ValueError(f"tier {name!r} must be a list of [start_s, end_s, label], got {segs!r:.80}")
        for i, seg in enumerate(segs):
            ok = isinstance(seg, (list, tuple)) and len(seg) == 3
            try:
                a, b = (float(seg[0]), float(seg[1])) if ok else (0.0, 0.0)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"tier {name!r} entry {i}: expected [start_s, end_s, label], got {seg!r:.80}")
            if a < 0 or b < a:
                raise ValueError(f"tier {name!r} entry {i}: times must satisfy 0 <= start <= end, got {seg!r:.80}")


def _audio_duration(clip: Clip, audio: Path) -> float | None:
    """The clip's duration: from the manifest, else the audio header (None if unreadable: reported later)."""
    if clip.duration_s:
        return float(clip.duration_s)
    try:
        return audio_info(audio)[2]
    except AudioLoadError:
        return None


def read_manifest(path: str | os.PathLike, *, fold_phones: bool = True, strict: bool = False,
                  errors: list[dict] | None = None, unknown_phones: Counter | None = None) -> Corpus:
    """Read a manifest.jsonl into a :class:`Corpus` rooted at the manifest's folder.

    A malformed row (bad JSON, no ``path``, malformed inline tiers) or a broken TextGrid
    raises ``ValueError`` naming the file and line when ``strict``; otherwise it is reported
    in ``errors`` (bad rows are dropped, clips with a broken TextGrid are kept without its
    tiers). Tiers that do not fit the audio (ending after it, or a TextGrid whose extent is
    another file's: :func:`~workbench.corpus.textgrid.check_extent`) are refused the same way.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    root = path.parent
    unknown = Counter() if unknown_phones is None else unknown_phones
    clips: list[Clip] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or not row.get("path"):
                    raise ValueError("row has no 'path'")
                _check_row(row)
            except ValueError as e:
                _fail(strict, errors, {"path": where, "stage": "manifest", "error": str(e), "action": "skipped"},
                      ValueError(f"{where}: bad manifest row ({e})"))
                continue
            row = dict(row)
            if not row.get("id"):
                row["id"] = clip_id_from_path(str(row["path"]))
            alignment = row.pop("alignment", None)
            clip = Clip.from_dict(row)
            if clip.speaker is None:
                clip.speaker = infer_speaker(clip.path, use_folders=False)
            audio = Path(clip.path) if Path(clip.path).is_absolute() else root / clip.path
            duration = _audio_duration(clip, audio) if (clip.tiers or alignment) else None
            if clip.tiers:
                try:
                    check_extent(clip.tiers, duration, audio, where)
                except ValueError as e:
                    _fail(strict, errors, {"clip_id": clip.id, "path": where, "stage": "tiers", "error": str(e),
                                           "action": "kept clip without tiers"}, e)
                    clip.tiers = {}
            if fold_phones and "phones" in clip.tiers:
                clip.tiers["phones"] = fold_segments(clip.tiers["phones"], end_s=clip.duration_s, unknown=unknown)
            if alignment:
                tg = Path(alignment) if Path(alignment).is_absolute() else root / alignment
                try:
                    tg_tiers, tg_end = read_textgrid(tg, fold_phones=fold_phones, unknown=unknown)
                    check_extent(tg_tiers, duration, audio, tg, end_s=tg_end)
                    for name, segs in tg_tiers.items():
                        clip.tiers.setdefault(name, segs)
                    clip.extra.setdefault("alignment_source", "textgrid")
                except ValueError as e:
                    _fail(strict, errors, {"clip_id": clip.id, "path": str(tg), "stage": "textgrid",
                                           "error": str(e), "action": "kept clip without tiers"},
                          ValueError(f"{where}: {e}"))
            clips.append(clip)
    return Corpus(clips, root=root)


def load_corpus(src: str | os.PathLike, *, fold_phones: bool = True, strict: bool = False,
                errors: list[dict] | None = None) -> Corpus:
    """Load a corpus from a manifest.jsonl, a folder holding one, or a folder tree of audio.

    ``fold_phones`` maps phone labels to the 39-phone set (see
    :mod:`workbench.corpus.phones`); labels it cannot map are kept and reported once.
    Pass a list as ``errors`` to receive the problems that were skipped.

    Example
    -------
    >>> corpus = load_corpus("work/synth")                # doctest: +SKIP
    >>> corpus[0].label_at("phones", 0.5)                  # doctest: +SKIP
    """
    src = Path(src)
    unknown: Counter = Counter()
    if src.is_file():
        if src.suffix != ".jsonl":
            raise ValueError(f"{src}: expected a manifest .jsonl file or a folder")
        corpus = read_manifest(src, fold_phones=fold_phones, strict=strict, errors=errors, unknown_phones=unknown)
    elif (src / "manifest.jsonl").is_file():
        corpus = read_manifest(src / "manifest.jsonl", fold_phones=fold_phones, strict=strict, errors=errors,
                               unknown_phones=unknown)
    elif src.is_dir():
        corpus = scan_folder(src, fold_phones=fold_phones, strict=strict, errors=errors, unknown_phones=unknown)
    else:
        raise FileNotFoundError(f"{src}: no such manifest or folder")
    if unknown:
        logger.warning("%s: phone labels outside the 39-phone set (kept as is): %s", src, dict(unknown))
    return corpus


@dataclass
class BuildResult:
    corpus: Corpus
    manifest: Path
    skipped: list[dict] = field(default_factory=list)  # every problem: path, stage, error, action
    errors_file: Path | None = None
    aligned: int = 0


def _load_sources(src, *, fmt: str = "auto", max_clips: int | None = None, seed: int = 0,
                  options: dict | None = None, audio_dir: Path | None = None, **kwargs) -> Corpus:
    """One source as :func:`load_corpus` reads it, or several merged (audio paths made absolute).

    Layout formats (TIMIT, LibriSpeech, ...) stream through :mod:`workbench.corpus.formats`;
    ``max_clips`` keeps a seeded uniform subset of the merged stream.
    """
    from workbench.corpus.formats import ReadContext, detect_format, iter_clips, subset

    sources = [src] if isinstance(src, (str, os.PathLike)) else list(src)
    kinds = [detect_format(one) if fmt == "auto" else fmt for one in sources]
    if len(sources) == 1 and kinds[0] in ("manifest", "folder"):
        corpus = load_corpus(sources[0], **kwargs)
        return corpus if max_clips is None else Corpus(subset(corpus, max_clips, seed), root=corpus.root)

    def stream():
        origin: dict[str, str | os.PathLike] = {}
        for one, kind in zip(sources, kinds):
            if kind in ("manifest", "folder"):
                part = load_corpus(one, **kwargs)
                clips = ((clip, part.audio_path(clip)) for clip in part)
            else:
                ctx = ReadContext(strict=kwargs.get("strict", False), fold_phones=kwargs.get("fold_phones", True),
                                  options=dict(options or {}), audio_dir=audio_dir)
                if kwargs.get("errors") is not None:
                    ctx.errors = kwargs["errors"]
                clips = ((clip, Path(clip.path)) for clip in iter_clips(one, kind, ctx))
            for clip, path in clips:
                if clip.id in origin:
                    raise ValueError(f"clip id {clip.id!r} is in both {origin[clip.id]} and {one}: "
                                     f"clip ids must be unique across the sources of one corpus")
                origin[clip.id] = one
                clip.path = str(path.resolve())
                yield clip

    return Corpus(subset(stream(), max_clips, seed), root=".")


def _check_clip(clip: Clip, path: Path, progress, strict: bool, skipped: list[dict]) -> bool:
    """Decode ``clip`` once (or reuse an interrupted build's result): fill its duration and sample
    rate, or report it in ``skipped``; True when the clip is usable."""
    done = progress.lookup(path)
    if done is None:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sr, duration = check_audio(path)
        except AudioLoadError as e:
            if strict:
                raise
            progress.record(path, error=e.problem)
            done = {"error": e.problem}
        else:
            done = {"sr": sr, "duration": duration, "warnings": [str(w.message) for w in caught]}
            progress.record(path, **done)
    if "error" in done:
        logger.warning("skipping %s: %s", path, done["error"])
        skipped.append({"clip_id": clip.id, "path": str(path), "stage": "audio", "error": done["error"],
                        "action": "skipped"})
        return False
    for w in done.get("warnings", []):
        logger.warning("%s", w)
        skipped.append({"clip_id": clip.id, "path": str(path), "stage": "audio", "error": w, "action": "kept"})
    clip.duration_s = round(done["duration"], 6)
    clip.extra.setdefault("sample_rate", done["sr"])
    return True


def build_corpus(src: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                 align: bool = False, strict: bool = False, fold_phones: bool = True, textgrids: bool = False,
                 verbose: bool = True, fmt: str = "auto", max_clips: int | None = None, seed: int = 0,
                 options: dict | None = None) -> BuildResult:
    """Load ``src``, decode every clip once, optionally force-align, write ``out_dir/manifest.jsonl``.

    ``src`` may be several sources (manifests, folders), merged into one corpus in order;
    a clip id found in two sources is an error naming both (ids key the cache and probes).

    Bad audio (missing, corrupt, empty, NaN/inf, wrong type) is logged and listed in
    ``out_dir/errors.jsonl`` and :attr:`BuildResult.skipped`, and the rest is kept;
    ``strict=True`` raises on the first bad file. ``align=True`` runs pocketsphinx on
    natural speech with a transcript and no word tier. Audio paths inside ``out_dir`` are
    written relative to it, others absolute. ``textgrids=True`` also writes
    ``out_dir/textgrids/<id>.TextGrid``.

    ``fmt`` names the layout (:data:`workbench.corpus.formats.FORMATS`; ``auto`` detects it),
    ``options`` its settings (``split``, column names for ``hf``); ``max_clips`` keeps a seeded
    uniform subset. Metadata is streamed and audio decoded one clip at a time, never all in
    memory; an interrupted build resumes where it stopped (:mod:`workbench.corpus.progress`).

    Example
    -------
    >>> res = build_corpus("data/ESC-50-master", "work/esc50", fmt="esc50", max_clips=200)   # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from workbench.corpus.progress import BuildProgress

    out = Path(out_dir)
    skipped: list[dict] = []
    corpus = _load_sources(src, fold_phones=fold_phones, strict=strict, errors=skipped, fmt=fmt, max_clips=max_clips,
                           seed=seed, options=options, audio_dir=out / "audio")
    if not len(corpus):
        shown = src if isinstance(src, (str, os.PathLike)) else ", ".join(map(str, src))
        problems = "; ".join(f"{e['path']}: {e['error']}" for e in skipped[:3])
        raise ValueError(f"{shown}: no clips to build (an empty manifest or a folder without audio)"
                         + (f"; problems: {problems}" if problems else "") + f"; nothing written to {out}")
    kept: list[Clip] = []
    progress = BuildProgress(out)
    with progress:
        for clip in tqdm(list(corpus), desc="check audio", unit="clip", disable=not verbose):
            path = corpus.audio_path(clip)
            if _check_clip(clip, path, progress, strict, skipped):
                kept.append(clip)
    if not kept:
        progress.finish()
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # made only for the progress file
        problems = "; ".join(f"{e['path']}: {e['error']}" for e in skipped if e.get("action") == "skipped")
        raise ValueError(f"none of the {len(corpus)} clips is usable audio ({problems[:500]}); "
                         f"nothing written to {out}")
    out.mkdir(parents=True, exist_ok=True)
    result_root = out.resolve()
    for clip in kept:
        abs_path = corpus.audio_path(clip).resolve()
        clip.path = (abs_path.relative_to(result_root).as_posix() if abs_path.is_relative_to(result_root)
                     else str(abs_path))
    built = Corpus(kept, root=out)
    aligned = 0
    if align:
        from workbench.corpus.align import align_corpus

        aligned = align_corpus(built, strict=strict, errors=skipped, verbose=verbose)
    manifest = built.save(out / "manifest.jsonl")
    errors_file = out / "errors.jsonl"
    if skipped:
        write_jsonl(errors_file, skipped)
    elif errors_file.exists():
        errors_file.unlink()  # stale report from an earlier build
    progress.finish()
    if textgrids:
        from workbench.corpus.textgrid import write_textgrid
        from workbench.names import safe_component

        for clip in built:
            if clip.tiers:  # a clip id such as ../x or /x is mapped to a safe file name (never outside out/)
                write_textgrid(clip, out / "textgrids" / f"{safe_component(clip.id)}.TextGrid")
    return BuildResult(built, manifest, skipped, errors_file if skipped else None, aligned)
