"""Corpus data types: :class:`Segment`, :class:`Clip` and :class:`Corpus`.

A corpus is a list of clips; each clip carries labelled tiers ("phones",
"words", ...) of time segments. These types are the contract every other
package reads (see ``DESIGN.md``).
"""
from __future__ import annotations

import bisect
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from workbench.atomic import write_jsonl

SILENCE = "sil"


@dataclass(frozen=True, order=True)
class Segment:
    """A labelled interval ``[start_s, end_s)`` in seconds."""

    start_s: float
    end_s: float
    label: str

    def __post_init__(self) -> None:
        if not self.end_s >= self.start_s:
            raise ValueError(f"Segment ends before it starts: {self}")


@dataclass
class Clip:
    """One audio clip with its labels.

    ``path`` is absolute or relative to the manifest that lists the clip.
    ``extra`` keeps any further manifest fields (source, licence, ...); they
    become frame-table columns in the activation cache.

    Example
    -------
    >>> c = Clip("x", "x.wav", "speech", tiers={"words": [Segment(0, 1, "hi")]})
    >>> c.label_at("words", 0.5), c.label_at("words", 1.5)
    ('hi', None)
    """

    id: str
    path: str
    domain: str = "speech"
    speaker: str | None = None
    transcript: str | None = None
    tiers: dict[str, list[Segment]] = field(default_factory=dict)
    duration_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def label_at(self, tier: str, t: float) -> str | None:
        """Label of ``tier`` active at time ``t`` (None in gaps or if the tier is absent)."""
        segs = self.tiers.get(tier)
        if not segs:
            return None
        starts = [s.start_s for s in segs]
        i = bisect.bisect_right(starts, t) - 1
        if i >= 0 and segs[i].start_s <= t < segs[i].end_s:
            return segs[i].label
        return None

    def labels_at(self, tier: str, times: Iterable[float]) -> list[str | None]:
        """Vectorised :meth:`label_at` for sorted or unsorted times."""
        return [self.label_at(tier, float(t)) for t in times]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "path": self.path,
            "domain": self.domain,
            "speaker": self.speaker,
            "transcript": self.transcript,
            "duration_s": self.duration_s,
        }
        if self.tiers:
            d["tiers"] = {k: [[s.start_s, s.end_s, s.label] for s in v] for k, v in self.tiers.items()}
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Clip":
        known = {"id", "path", "domain", "speaker", "transcript", "duration_s", "tiers"}
        tiers = {
            k: sorted(Segment(float(a), float(b), str(lab)) for a, b, lab in v)
            for k, v in (d.get("tiers") or {}).items()
        }
        return cls(
            id=str(d["id"]),
            path=str(d["path"]),
            domain=d.get("domain") or "speech",
            speaker=d.get("speaker"),
            transcript=d.get("transcript"),
            tiers=tiers,
            duration_s=d.get("duration_s"),
            extra={k: v for k, v in d.items() if k not in known},
        )


class Corpus:
    """An ordered collection of :class:`Clip` with a root directory for relative paths.

    Example
    -------
    >>> corpus = Corpus([Clip("a", "a.wav", "music")], root=".")
    >>> corpus.summary()["domains"]
    {'music': 1}
    """

    def __init__(self, clips: Iterable[Clip], root: str | os.PathLike = ".") -> None:
        self.clips = list(clips)
        self.root = Path(root)
        ids = [c.id for c in self.clips]
        dup = [i for i, n in Counter(ids).items() if n > 1]
        if dup:
            raise ValueError(f"duplicate clip ids in corpus: {dup[:5]}")

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)

    def __getitem__(self, i: int) -> Clip:
        return self.clips[i]

    def audio_path(self, clip: Clip) -> Path:
        p = Path(clip.path)
        return p if p.is_absolute() else self.root / p

    def summary(self) -> dict[str, Any]:
        """Counts for ``workbench corpus info``: clips, hours, domains, speakers, phones."""
        phones: Counter[str] = Counter()
        for c in self.clips:
            phones.update(s.label for s in c.tiers.get("phones", []))
        dur = sum(c.duration_s or 0.0 for c in self.clips)
        return {
            "clips": len(self.clips),
            "hours": dur / 3600.0,
            "domains": dict(Counter(c.domain for c in self.clips)),
            "speakers": dict(Counter(c.speaker for c in self.clips if c.speaker)),
            "tiers": sorted({t for c in self.clips for t in c.tiers}),
            "phone_inventory": dict(sorted(phones.items())),
        }

    def fingerprint(self) -> str:
        """Stable hash of clip ids, paths, sizes and labels: a cache refuses to append to another corpus."""
        import hashlib

        h = hashlib.sha256()
        for c in self.clips:
            p = self.audio_path(c)
            size = p.stat().st_size if p.exists() else -1
            h.update(json.dumps([c.id, str(c.path), size, c.to_dict()], sort_keys=True, default=str).encode())
        return h.hexdigest()[:16]

    # --- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``manifest.jsonl`` (tiers inline) atomically; returns its path."""
        path = Path(path)
        if path.is_dir() or path.suffix != ".jsonl":
            path = path / "manifest.jsonl"
        return write_jsonl(path, (c.to_dict() for c in self.clips))
