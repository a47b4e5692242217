"""TIMIT layout: ``TRAIN|TEST/DR<n>/<SPEAKER>/<UTT>.WAV`` with ``.PHN``, ``.WRD`` and ``.TXT``.

The ``.PHN``/``.WRD`` files give ``start end label`` in samples; tiers are converted with the
file's own sample rate (from the NIST SPHERE header, or the RIFF header of converted copies), so
``phones61`` (the 61 TIMIT labels as found) matches the sample offsets exactly. ``phones`` is the
39-class folding used in probing papers (Lee & Hon, :func:`workbench.corpus.fold_phone`); the
probes select either with ``--target phones`` or ``--target phones61``. Speaker = the speaker
folder (its first letter is the sex), ``dialect`` = ``DR<n>``, ``split`` = ``train``/``test``,
``sentence_type`` = ``SA``/``SI``/``SX``. Lower-case copies and ``UTT.WAV.wav`` conversions
are read too. Shorten-compressed SPHERE files (the LDC discs) are reported: convert them with
``sph2pipe`` first.

Usage (on a real corpus in that layout)::

    from workbench.corpus.formats import iter_clips
    clip = next(iter_clips("data/TIMIT", "timit"))
    clip.speaker, clip.extra["dialect"], clip.tiers["phones61"][0].label
    # -> ('fcjf0', 'dr1', 'h#')
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from workbench.corpus.formats import ReadContext
from workbench.corpus.phones import fold_segments
from workbench.corpus.types import Clip, Segment

__all__ = ["read_timit", "read_sphere_header", "read_sample_file"]


def read_sphere_header(path: str | os.PathLike) -> dict[str, str | int] | None:
    """Fields of a NIST SPHERE header (``sample_rate``, ``sample_count``, ``sample_coding``, ...);
    ``None`` when the file is not SPHERE (e.g. a RIFF copy)."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if not head.startswith(b"NIST_1A"):
        return None
    size = int(head.split(b"\n")[1].strip() or 1024)
    if size > len(head):
        with open(path, "rb") as fh:
            head = fh.read(size)
    fields: dict[str, str | int] = {}
    for line in head.decode("ascii", "replace").split("\n")[2:]:
        if line.startswith("end_head"):
            break
        parts = line.split(None, 2)
        if len(parts) == 3:
            fields[parts[0]] = int(parts[2]) if parts[1] == "-i" else parts[2].strip()
    return fields


def read_sample_file(path: Path, sr: int, ctx: ReadContext) -> list[Segment] | None:
    """``start end label`` lines in samples -> segments in seconds (``None`` after a reported bad line)."""
    segs = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split(None, 2)
        if not parts:
            continue
        try:
            a, b, label = int(parts[0]), int(parts[1]), parts[2].strip()
            segs.append(Segment(a / sr, b / sr, label))
        except (ValueError, IndexError):
            ctx.bad_row(path, i, f"expected 'start end label' in samples, got {line.strip()[:60]!r}")
            return None
    return segs


def _audio_for(stem: Path) -> Path | None:
    for suffix in (".WAV", ".wav", ".WAV.wav", ".wav.wav"):
        cand = stem.with_name(stem.name + suffix)
        if cand.is_file():
            return cand
    return None


def _sample_rate(audio: Path, ctx: ReadContext) -> int | None:
    header = read_sphere_header(audio)
    if header is None:
        from workbench.audio import AudioLoadError, audio_info

        try:
            return audio_info(audio)[0]
        except AudioLoadError as e:
            ctx.bad_row(audio, None, e.problem, stage="audio")
            return None
    if "shorten" in str(header.get("sample_coding", "")):
        ctx.bad_row(audio, None, "NIST SPHERE with shorten compression: convert it with sph2pipe", stage="audio")
        return None
    return int(header.get("sample_rate", 16000))


def read_timit(root: Path, ctx: ReadContext) -> Iterator[Clip]:
    """Stream TIMIT utterances under ``root`` (sorted; see the module docstring)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.lower().endswith(".phn"):
                continue
            phn = Path(dirpath) / name
            stem = phn.with_suffix("")
            audio = _audio_for(stem)
            if audio is None:
                ctx.bad_row(phn, None, f"no audio file beside it ({stem.name}.WAV)")
                continue
            sr = _sample_rate(audio, ctx)
            if sr is None:
                continue
            phones = read_sample_file(phn, sr, ctx)
            if phones is None:
                continue
            tiers = {"phones61": phones}
            tiers["phones"] = fold_segments(phones, end_s=phones[-1].end_s if phones else None,
                                            unknown=ctx.unknown_phones) if ctx.fold_phones else list(phones)
            transcript = None
            for suffix, tier in ((".WRD", "words"), (".TXT", None)):
                side = next((p for p in (stem.with_suffix(suffix), stem.with_suffix(suffix.lower())) if p.is_file()),
                            None)
                if side is None:
                    continue
                if tier:
                    words = read_sample_file(side, sr, ctx)
                    if words is not None:
                        tiers[tier] = words
                else:
                    parts = side.read_text(encoding="utf-8", errors="replace").split(None, 2)
                    transcript = " ".join(parts[2].split()) if len(parts) == 3 else None
            rel = [p.lower() for p in phn.relative_to(root).parts]
            speaker, dialect = (rel[-2] if len(rel) >= 2 else None), (rel[-3] if len(rel) >= 3 else None)
            split = next((p for p in rel if p in ("train", "test")), None)
            utt = stem.name.lower()
            clip_id = "_".join(p for p in ("timit", split, dialect, speaker, utt) if p)
            yield Clip(clip_id, str(audio.resolve()), "speech", speaker=speaker, transcript=transcript, tiers=tiers,
                       extra={"dialect": dialect, "split": split, "sex": speaker[0] if speaker else None,
                              "sentence_type": utt[:2], "sample_rate": sr})
