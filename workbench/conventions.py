"""What every analysis agrees on: groups, frame centres, hook globs, permutation p-values.

One rule each, one implementation each; ``sae``, ``probes``, ``neuro``, steering and the app
call these instead of restating them (docs: docs/readme/conventions.md).

- **Groups** (:func:`group_of`, :func:`groups_of`, :func:`frame_groups`): the unit a split keeps
  whole. A clip's key is its source recording (``extra["source_id"]``), else its speaker, else
  the clip itself; for a split, clips that share a source *or* a speaker are one group
  (``by="speaker"``, the default), or clips that share a source (``by="clip"``: segments of one
  recording are never split, voices may be).
- **Frame centres** (:class:`FrameGrid`, :func:`conv_grid`, :func:`stft_grid`): frame ``i`` of a
  hook is centred at ``offset_s + i * hop_s``, derived from the model's own front end (STFT
  centring, conv kernels, strides and padding), never restated by hand. A frame table's
  ``start_s``/``end_s`` are ``centre -/+ hop / 2``, so their midpoint is the true centre (frame 0
  of Whisper starts at -10 ms: it is centred on the first sample).
- **Hook globs** (:func:`resolve_hooks`): names or ``fnmatch`` globs -> hooks in the given order.
- **Permutation p-values** (:func:`permutation_p`): ``(1 + #(null >= observed)) / (1 + n)``.
- **Massive frames** (:func:`norm_limit`, :func:`massive_mask`): frames whose L2 norm exceeds
  ``ratio`` x the median norm; an SAE trained without them is scored and spliced without them.

Example
-------
>>> from workbench.corpus import Clip
>>> a = Clip("a", "a.wav", speaker="s1", extra={"source_id": "rec1"})
>>> b = Clip("b", "b.wav", speaker="s1", extra={"source_id": "rec2"})
>>> c = Clip("c", "c.wav", extra={"source_id": "rec2"})
>>> d = Clip("d", "d.wav")
>>> [group_of(x) for x in (a, b, c, d)]
['rec1', 'rec2', 'rec2', 'd']
>>> groups_of([a, b, c, d])   # a and b share a voice, b and c a recording: one group
['rec1', 'rec1', 'rec1', 'd']
>>> groups_of([a, b, c, d], by="clip")
['rec1', 'rec2', 'rec2', 'd']
>>> FrameGrid(0.0, 0.02).times(2).tolist()       # Whisper encoder: frame i centred at i x 20 ms
[[-0.01, 0.01], [0.01, 0.03]]
>>> resolve_hooks(["blocks.*.out"], ["blocks.0.out", "blocks.1.out", "head"])
['blocks.0.out', 'blocks.1.out']
>>> float(permutation_p(0.5, [0.1, 0.6, 0.2, 0.3]))
0.4
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "GROUP_BY",
    "MASSIVE_RATIO",
    "FrameGrid",
    "UnknownHookError",
    "conv_grid",
    "frame_groups",
    "group_of",
    "groups_of",
    "massive_mask",
    "norm_limit",
    "permutation_p",
    "resolve_hooks",
    "stft_grid",
]

# --- groups ---------------------------------------------------------------------------------------
#: split levels every grouped split accepts ("group" is a synonym of "speaker")
GROUP_BY = ("speaker", "clip", "group")


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == ""


def _source(clip) -> Any:
    extra = getattr(clip, "extra", None) or {}
    return extra.get("source_id")


def group_of(clip) -> str:
    """A clip's group key: its source recording (``extra["source_id"]``), else speaker, else its id.

    For a split over many clips use :func:`groups_of`, which also joins clips whose keys differ
    but that share a speaker (two recordings of one voice) or a source.
    """
    for v in (_source(clip), getattr(clip, "speaker", None), clip.id):
        if not _blank(v):
            return str(v)
    raise ValueError("group_of: clip has no id")


def _check_by(by: str) -> str:
    if by not in GROUP_BY:
        raise ValueError(f"group by must be one of {GROUP_BY}, got {by!r}")
    return "speaker" if by == "group" else by


def _components(keys: Sequence[tuple[str, str, str | None]], by: str) -> list[str]:
    """Union-find over (clip id, source, speaker) rows; each row's label is the group key
    (:func:`group_of` rule) of the first row of its component, made unique."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    for _clip, source, speaker in keys:
        find("src:" + source)
        if by == "speaker" and speaker is not None:
            union("src:" + source, "spk:" + speaker)
    label: dict[str, str] = {}
    used: set[str] = set()
    out = []
    for clip, source, speaker in keys:
        root = find("src:" + source)
        if root not in label:
            name = source if source != clip or speaker is None or by == "clip" else speaker
            while name in used:  # two groups never share a label (a speaker named like a clip)
                name += "#"
            used.add(name)
            label[root] = name
        out.append(label[root])
    return out


def groups_of(clips: Iterable, by: str = "speaker") -> list[str]:
    """One group label per clip (in order) for a grouped split.

    ``by="speaker"`` (or ``"group"``): clips sharing a source recording or a speaker are one
    group; ``by="clip"``: clips sharing a source recording (a clip without ``source_id`` is its
    own source). The label is the group's first clip's key (:func:`group_of`; its source with
    ``by="clip"``), made unique.
    """
    by = _check_by(by)
    keys = []
    for c in clips:
        src = _source(c)
        spk = getattr(c, "speaker", None)
        keys.append((str(c.id), str(c.id) if _blank(src) else str(src), None if _blank(spk) else str(spk)))
    return _components(keys, by)


def frame_groups(frames, by: str = "speaker") -> np.ndarray:
    """Group label per row of a frame table (columns ``clip_id``, ``speaker``, optional ``source_id``).

    Same rule as :func:`groups_of`; a per-frame speaker tier that gives one clip several speakers
    joins them all into the clip's group.
    """
    import pandas as pd

    by = _check_by(by)
    n = len(frames)
    cols = [frames["clip_id"].astype(str).to_numpy(),
            frames["source_id"].to_numpy() if "source_id" in frames else np.full(n, None, object),
            frames["speaker"].to_numpy() if "speaker" in frames else np.full(n, None, object)]
    codes, uniques = zip(*(pd.factorize(pd.Series(c, dtype=object), use_na_sentinel=True) for c in cols))
    sizes = [len(u) + 1 for u in uniques]  # code -1 (missing) -> 0
    flat = (codes[0] + 1).astype(np.int64)
    for c, m in zip(codes[1:], sizes[1:]):
        flat = flat * m + (c + 1)
    combos, inverse = np.unique(flat, return_inverse=True)
    value = lambda j, i: None if i < 0 else uniques[j][i]  # noqa: E731
    keys = []
    for code in combos:
        pi, rest = int(code % sizes[2]) - 1, int(code // sizes[2])
        si, ci = rest % sizes[1] - 1, rest // sizes[1] - 1
        c, s, p = value(0, ci), value(1, si), value(2, pi)
        keys.append((c, c if _blank(s) else str(s), None if _blank(p) else str(p)))
    labels = _components(keys, by)
    by_clip: dict[str, str] = {}
    for (c, _s, _p), g in zip(keys, labels):
        by_clip.setdefault(c, g)
    return np.array([by_clip[k[0]] for k in keys], dtype=object)[inverse.reshape(-1)]


# --- frame centres ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameGrid:
    """Frame ``i`` is centred at ``offset_s + i * hop_s`` seconds (audio sample ``k`` is at ``k / sr``)."""

    offset_s: float
    hop_s: float

    def centres(self, n: int) -> np.ndarray:
        return self.offset_s + np.arange(n, dtype=np.float64) * self.hop_s

    def times(self, n: int) -> np.ndarray:
        """``[n, 2]`` start/end seconds: ``centre -/+ hop / 2`` (the midpoint is the centre)."""
        c = self.centres(n)
        return np.stack([c - self.hop_s / 2, c + self.hop_s / 2], axis=1)

    def frame_at(self, t: float) -> int:
        """Index of the frame whose centre is nearest to ``t`` seconds (may be negative)."""
        return int(np.floor((t - self.offset_s) / self.hop_s + 0.5))


def stft_grid(hop: int, sample_rate: int, center: bool = True, n_fft: int | None = None) -> FrameGrid:
    """A short-time transform's frames: centred on sample ``j * hop`` (``center=True``, the
    torch/librosa convention), else on ``j * hop + (n_fft - 1) / 2``."""
    if center:
        return FrameGrid(0.0, hop / sample_rate)
    if n_fft is None:
        raise ValueError("stft_grid(center=False) needs n_fft")
    return FrameGrid((n_fft - 1) / 2 / sample_rate, hop / sample_rate)


def conv_grid(layers: Iterable[tuple[int, int, int]], base: FrameGrid) -> FrameGrid:
    """Compose 1-D conv layers ``(kernel, stride, left padding)`` over frames on ``base``.

    Output frame ``i`` reads input frames ``i*s - p .. i*s - p + k - 1``, so its centre (in input
    frames) is ``i*s + (k - 1)/2 - p``; applied layer by layer. Raw audio is ``FrameGrid(0, 1/sr)``.

    >>> g = conv_grid([(10, 5, 0)] + [(3, 2, 0)] * 4 + [(2, 2, 0)] * 2, FrameGrid(0.0, 1 / 16000))
    >>> round(g.offset_s * 16000, 1), round(g.hop_s * 16000)   # HuBERT: samples 320 i .. 320 i + 399
    (199.5, 320)
    """
    offset, hop = base.offset_s, base.hop_s
    for k, s, p in layers:
        offset, hop = offset + ((k - 1) / 2 - p) * hop, hop * s
    return FrameGrid(offset, hop)


# --- hook globs --------------------------------------------------------------------------------------
class UnknownHookError(KeyError, ValueError):
    """A hook name or glob that matches nothing; the message lists the valid ones.

    Both a ``KeyError`` (a name lookup) and a ``ValueError`` (a bad argument), so callers that
    caught either before the resolvers were merged still do."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def resolve_hooks(patterns: str | Sequence[str] | None, available: Sequence[str], what: str = "hooks",
                  allow_all: bool = True) -> list[str]:
    """Names or ``fnmatch`` globs -> hooks of ``available`` in its order, each once.

    ``"all"`` / None (when ``allow_all``) means every hook. A pattern matching nothing raises
    :class:`UnknownHookError` naming it and listing ``available`` (``what`` says where they are).
    """
    available = list(available)
    if allow_all and (patterns is None or patterns == "all"):
        return available
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    chosen: set[str] = set()
    for p in pats:
        hits = [h for h in available if fnmatch.fnmatchcase(h, p)]
        if not hits:
            raise UnknownHookError(f"{p!r} matches no hook of {what}. Valid hook points:\n  " + "\n  ".join(available))
        chosen.update(hits)
    return [h for h in available if h in chosen]


# --- permutation p-values -------------------------------------------------------------------------------
def permutation_p(observed, null, axis: int = 0) -> np.ndarray:
    """``(1 + #(null >= observed)) / (1 + n)`` with ``n`` null draws along ``axis`` of ``null``.

    The observed statistic counts as one draw of the null, so p is never 0 (Phipson & Smyth
    2010). ``observed`` broadcasts against ``null`` without its ``axis``. One-sided: pass
    ``|r|`` for a two-sided test.
    """
    null = np.asarray(null, dtype=np.float64)
    obs = np.expand_dims(np.asarray(observed, dtype=np.float64), axis)
    return (1.0 + (null >= obs).sum(axis)) / (1.0 + null.shape[axis])


# --- massive frames -----------------------------------------------------------------------------------------
#: default: frames above 10 x the median norm are "massive" (Whisper's attention-sink-like frames)
MASSIVE_RATIO = 10.0


def norm_limit(median_norm: float, ratio: float | None = MASSIVE_RATIO) -> float | None:
    """The L2 norm above which a frame is massive (None: no filter)."""
    return None if ratio is None else float(ratio) * float(median_norm)


def massive_mask(x, limit: float | None) -> np.ndarray:
    """Boolean mask of rows of ``x`` (``[N, D]`` array or tensor) whose L2 norm exceeds ``limit``."""
    if limit is None:
        return np.zeros(len(x), dtype=bool)
    if hasattr(x, "detach"):
        return (x.detach().float().norm(dim=-1) > limit).cpu().numpy()
    return np.linalg.norm(np.asarray(x, dtype=np.float32), axis=-1) > limit
