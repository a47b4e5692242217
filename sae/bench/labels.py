"""What the workspace knows about each frame, as exclusive label tiers an explanation can name.

A *tier* assigns each frame at most one label: the phone and word at the frame centre, its broad
phone class (vowel, fricative, stop, nasal, approximant), the previous / next phone alone and paired
with the frame's phone ("phone S before T": features that fire on part of a word often follow a
phone in one context), the speaker, the domain, and binned acoustic descriptors (:mod:`workbench.acoustics`: loudness,
voicing, pitch, spectral centroid and flatness, onset strength, in terciles over the frames
given). Labels of one tier never overlap, so "phone S or Z" covers exactly the frames of S plus
those of Z. Every (tier, label) pair is a *concept* with a global index.

Example
-------
>>> import pandas as pd
>>> frames = pd.DataFrame({"clip_id": ["a", "a", "b"], "phones": ["S", "AA", None],
...                        "domain": ["speech", "speech", "music"], "speaker": ["s1", "s1", None]})
>>> c = frame_concepts(frames, min_count=1)
>>> c.names
['phone AA', 'phone S', 'speaker s1', 'music', 'speech', 'fricative', 'vowel']
>>> c.tiers
['phone', 'speaker', 'domain', 'phone class']
>>> c.lab.tolist()                         # [tier, frame] -> concept index, -1 = no label
[[1, 0, -1], [2, 2, -1], [4, 4, 3], [5, 6, -1]]
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: frame-table column -> tier name used in explanations ("" = the label alone, e.g. "speech")
TIER_COLUMNS = {"phones": "phone", "words": "word", "speaker": "speaker", "domain": ""}
#: descriptor -> (tier name, label per tercile low / mid / high)
DESCRIPTOR_BINS = {
    "loudness_db": ("loudness", ("quiet", "moderate level", "loud")),
    "pitch_hz": ("pitch", ("low pitch", "mid pitch", "high pitch")),
    "centroid_hz": ("brightness", ("dark (low centroid)", "mid centroid", "bright (high centroid)")),
    "flatness": ("flatness", ("tonal (low flatness)", "mid flatness", "noisy (high flatness)")),
    "onset": ("onset", ("steady (low flux)", "mid flux", "onset (high flux)")),
}


@dataclass
class Concepts:
    """Exclusive tiers over N frames: ``lab [n_tiers, N]`` holds each frame's concept index per tier (-1: none)."""

    tiers: list[str]
    names: list[str]
    tier_of: np.ndarray                    # [n_concepts] tier index of each concept
    lab: np.ndarray                        # [n_tiers, N] int32
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.lab.shape[1])

    def subset(self, rows: np.ndarray) -> Concepts:
        return Concepts(self.tiers, self.names, self.tier_of, self.lab[:, rows], self.extra)

    def onehot(self):
        """``scipy.sparse.csr_matrix [N, n_concepts]`` of 0/1 memberships (float32)."""
        from scipy import sparse

        t, i = np.nonzero(self.lab >= 0)
        return sparse.csr_matrix((np.ones(len(i), np.float32), (i, self.lab[t, i])), shape=(self.n, len(self.names)))

    def mask(self, concept: int) -> np.ndarray:
        return self.lab[self.tier_of[concept]] == concept


def _add_tier(tiers, names, tier_of, labs, tier: str, values: np.ndarray, min_count: int, prefix: str) -> None:
    vals = pd.Series(values, dtype=object)
    ok = vals.notna()
    counts = vals[ok].astype(str).value_counts()
    keep = sorted(counts.index[counts >= min_count])
    if not keep:
        return
    t = len(tiers)
    tiers.append(tier)
    base = len(names)
    names += [f"{prefix} {k}".strip() for k in keep]
    tier_of += [t] * len(keep)
    index = {k: base + j for j, k in enumerate(keep)}
    labs.append(np.array([index.get(str(v), -1) if o else -1 for v, o in zip(values, ok)], dtype=np.int32))


#: position of the frame centre within its model window (Whisper: 30 s), in seconds: bin edges and labels
POSITION_BINS = ([-np.inf, 0.1, 0.3, 0.6, 1, 2, 4, 8, np.inf],
                 ["<0.1 s", "0.1-0.3 s", "0.3-0.6 s", "0.6-1 s", "1-2 s", "2-4 s", "4-8 s", ">8 s"])


def neighbour_labels(frames: pd.DataFrame, tier: str = "phones", shift: int = -1) -> np.ndarray:
    """Per frame, the label of the segment ``shift`` segments away in the same clip (``-1``: the
    previous phone), from the frame table's ``<tier>_seg`` column; None where there is none."""
    out = np.full(len(frames), None, dtype=object)
    seg_col = f"{tier}_seg"
    if tier not in frames or seg_col not in frames:
        return out
    seg_all = frames[seg_col].to_numpy()
    lab_all = frames[tier].to_numpy(dtype=object)
    for idx in frames.groupby("clip_id", sort=False).indices.values():
        seg, lab = seg_all[idx], lab_all[idx]
        by_seg = {int(a): b for a, b in zip(seg, lab) if a >= 0}
        out[idx] = [by_seg.get(int(a) + shift) if a >= 0 else None for a in seg]
    return out


def frame_concepts(frames: pd.DataFrame, descriptors: pd.DataFrame | None = None, min_count: int = 20,
                   voiced_above: float = 0.5, window_s: float | None = 30.0) -> Concepts:
    """Concepts of the frames in ``frames`` (a cache frame table: ``phones``, ``words``, ``speaker``,
    ``domain`` where present; the previous / next phone from ``phones_seg``; the position of the
    frame centre in its ``window_s`` model window, Whisper's features encode it) and, when given, of
    ``descriptors`` (:func:`workbench.acoustics.corpus_descriptors`, same rows). Labels seen on fewer
    than ``min_count`` frames are dropped (no rule can be judged on them)."""
    frames = frames.reset_index(drop=True)
    tiers: list[str] = []
    names: list[str] = []
    tier_of: list[int] = []
    labs: list[np.ndarray] = []
    for col, tier in TIER_COLUMNS.items():
        if col in frames:
            _add_tier(tiers, names, tier_of, labs, tier or col, frames[col].to_numpy(dtype=object), min_count, tier)
    if "phones_seg" in frames:
        for shift, tier in ((-1, "after phone"), (1, "before phone")):
            _add_tier(tiers, names, tier_of, labs, tier, neighbour_labels(frames, "phones", shift), min_count, tier)
    if "phones" in frames:  # broad phone class (vowel, fricative, ...) and the phone with its neighbour
        from sae.bench.absorption import PHONE_CLASSES

        cls = {p: name for name, members in PHONE_CLASSES.items() for p in members}
        ph = frames["phones"].to_numpy(dtype=object)
        _add_tier(tiers, names, tier_of, labs, "phone class",
                  np.array([cls.get(str(p).rstrip("012")) if isinstance(p, str) else None for p in ph], dtype=object),
                  min_count, "")
        if "phones_seg" in frames:
            for shift, word, tier in ((1, "before", "phone pair (next)"), (-1, "after", "phone pair (previous)")):
                other = neighbour_labels(frames, "phones", shift)
                pair = np.array([f"{p} {word} {o}" if isinstance(p, str) and isinstance(o, str) else None
                                 for p, o in zip(ph, other)], dtype=object)
                _add_tier(tiers, names, tier_of, labs, tier, pair, min_count, "phone")
    if window_s and {"start_s", "end_s"} <= set(frames.columns):
        centre = 0.5 * (frames["start_s"].to_numpy(float) + frames["end_s"].to_numpy(float))
        edges, words = POSITION_BINS
        b = np.digitize(np.mod(np.maximum(centre, 0.0), window_s), edges[1:-1])
        _add_tier(tiers, names, tier_of, labs, "position", np.array(words, dtype=object)[b], min_count, "position")
    if descriptors is not None:
        d = descriptors.reset_index(drop=True)
        if len(d) != len(frames):
            raise ValueError(f"{len(d)} descriptor rows for {len(frames)} frames")
        audible = d["loudness_db"].to_numpy(float) > -60
        if "voicing" in d:
            v = d["voicing"].to_numpy(float)
            _add_tier(tiers, names, tier_of, labs, "voicing",
                      np.where(~audible, None, np.where(v >= voiced_above, "voiced", "unvoiced")), min_count, "")
        for col, (tier, words) in DESCRIPTOR_BINS.items():
            if col not in d:
                continue
            x = d[col].to_numpy(float)
            ok = np.isfinite(x) & (audible | (col == "loudness_db"))
            if ok.sum() < 3 * min_count:
                continue
            edges = np.quantile(x[ok], [1 / 3, 2 / 3])
            b = np.digitize(x, edges)
            _add_tier(tiers, names, tier_of, labs, tier, np.where(ok, np.array(words, dtype=object)[b], None),
                      min_count, "")
    lab = np.stack(labs) if labs else np.zeros((0, len(frames)), np.int32)
    return Concepts(tiers, names, np.asarray(tier_of, dtype=np.int64), lab)
