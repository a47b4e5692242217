"""Probe targets from a cache frame table: labels, split groups, control types and pooling.

Targets:

- ``phones``: the phone tier folded to the corpus's 39-class set (Lee & Hon's TIMIT folding:
  38 phones plus ``sil``, see :func:`fold_phone`); other labels are dropped;
- ``words`` or ``words:N``: the N most frequent words (default 50), other frames dropped;
- ``speaker``, ``domain``, or any other frame-table column (tier or manifest field).

Pooling: ``frame`` (one sample per frame), ``segment`` (the mean of the frames inside
each labelled segment, via the cache's ``<tier>_seg`` column: the usual TIMIT
phone-probe protocol) or ``clip`` (the mean over each clip, for clip-level fields).

Example
-------
>>> import pandas as pd
>>> frames = pd.DataFrame({"clip_id": ["a"] * 4, "speaker": ["s"] * 4,
...                        "phones": ["sil", "AH0", "AH0", "T"], "phones_seg": [0, 1, 1, 2]})
>>> t = build_target(frames, "phones", split="clip", pooling="segment")
>>> t.y.tolist(), t.pool.toarray()[1].tolist()
(['sil', 'AH', 'T'], [0.0, 0.5, 0.5, 0.0])
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from workbench.corpus.phones import PHONES_39
from workbench.corpus.phones import fold_phone as _corpus_fold
from workbench.corpus.types import SILENCE

from probes.splits import split_groups

logger = logging.getLogger(__name__)


def _text(v) -> str | None:
    """A label as text, None for missing values (None, NaN, pandas NA: pandas 3 string columns use NaN)."""
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def _column(frames: pd.DataFrame, col: str) -> pd.Series:
    """A frame-table column as an object Series holding str or None."""
    return pd.Series([_text(v) for v in frames[col].to_numpy()], index=frames.index, dtype=object)


def fold_phone(label) -> str | None:
    """Fold one phone label with the corpus's folding (:func:`workbench.corpus.phones.fold_phone`:
    Lee & Hon's 38 phones + ``sil``); None for missing labels and labels outside the set.

    >>> [fold_phone(p) for p in ["AH0", "ax", "sp", "ao1", "XX", None]]
    ['AH', 'AH', 'sil', 'AA', None, None]
    """
    label = _text(label)
    if label is None:
        return None
    p = _corpus_fold(label)
    return p if p in PHONES_39 else None


@dataclass
class Target:
    """Samples for one target.

    ``rows``: frame-table rows whose activations are needed; ``pool``: None (sample i is
    frame ``rows[i]``) or a sparse averaging matrix [n_samples, len(rows)]; ``y`` the
    labels, ``groups`` the split groups, ``types`` the control-task types, one per sample.
    """

    name: str
    rows: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    types: np.ndarray
    pool: sp.csr_matrix | None = None

    def __len__(self) -> int:
        return len(self.y)

    def features(self, X_rows: np.ndarray) -> np.ndarray:
        """Per-sample features from the activations of ``rows`` (averaged when pooling)."""
        X_rows = np.asarray(X_rows, dtype=np.float32)
        if len(X_rows) != len(self.rows):
            raise ValueError(f"got {len(X_rows)} activation rows, target {self.name!r} needs {len(self.rows)}")
        return X_rows if self.pool is None else np.asarray(self.pool @ X_rows, dtype=np.float32)


def _labels(frames: pd.DataFrame, target: str) -> tuple[pd.Series, str]:
    """The label column for ``target`` and the column it came from."""
    name, _, arg = target.partition(":")
    if name == "phones":
        col = "phones" if "phones" in frames else None
        if col is None:
            raise KeyError(f"target 'phones': the cache has no phones tier (columns: {list(frames.columns)})")
        raw = frames[col].to_numpy()
        folded = pd.Series([fold_phone(v) for v in raw], index=frames.index, dtype=object)
        dropped = int((folded.isna() & pd.Series([_text(v) is not None for v in raw], index=frames.index)).sum())
        if dropped:
            logger.warning("target 'phones': %d frames with labels outside the 39-class set dropped", dropped)
        return folded, col
    if name == "words":
        if "words" not in frames:
            raise KeyError(f"target 'words': the cache has no words tier (columns: {list(frames.columns)})")
        top_n = int(arg) if arg else 50
        drop = {SILENCE, "<sil>", "sp", "spn", "<unk>", ""}
        words = pd.Series([None if (w := _text(v)) is None or w.strip().lower() in drop else w.strip().lower()
                           for v in frames["words"].to_numpy()], index=frames.index, dtype=object)
        key = frames["clip_id"].astype(str) + "\x00" + frames["words_seg"].astype(str) if "words_seg" in frames else None
        tokens = words[words.notna()]
        if key is not None:  # rank by number of word tokens, not frames (long words are not "frequent")
            tokens = words[words.notna()].groupby(key[words.notna()]).first()
        keep = set(tokens.value_counts().index[:top_n])
        return pd.Series([w if w in keep else None for w in words], index=frames.index, dtype=object), "words"
    if target not in frames:
        raise KeyError(f"unknown target {target!r}: not a frame-table column (columns: {list(frames.columns)})")
    return _column(frames, target), target


def _segment_types(frames: pd.DataFrame, col: str, labels: pd.Series) -> np.ndarray:
    """Control-task type of each frame: its label in context (previous|label|next segment of the tier)."""
    seg = frames[f"{col}_seg"].to_numpy()
    clip = frames["clip_id"].to_numpy()
    lab = labels.to_numpy(dtype=object)
    starts = np.r_[True, (clip[1:] != clip[:-1]) | (seg[1:] != seg[:-1])]
    seg_idx = np.cumsum(starts) - 1  # run id of consecutive frames in one segment
    run_lab = lab[starts]
    run_clip = clip[starts]
    prev = np.r_[None, run_lab[:-1]].astype(object)
    nxt = np.r_[run_lab[1:], None].astype(object)
    prev[np.r_[True, run_clip[1:] != run_clip[:-1]]] = None
    nxt[np.r_[run_clip[1:] != run_clip[:-1], True]] = None
    run_type = np.array([f"{p}|{c}|{n}" for p, c, n in zip(prev, run_lab, nxt)], dtype=object)
    return run_type[seg_idx]


def build_target(
    frames: pd.DataFrame,
    target: str,
    split: str = "speaker",
    pooling: str = "frame",
    control_types: str = "context",
    max_samples: int | None = None,
    seed: int = 0,
) -> Target:
    """Samples, labels, split groups and control types of ``target`` in a frame table.

    ``split``: "speaker" or "clip" (or any column). ``control_types``: "context" (tier
    targets: the label with its neighbouring segment labels; clip-level targets: the
    clip), "label" (Hewitt & Liang literally: the type is the label), or a column name.
    ``max_samples`` keeps a seeded random subset of samples.
    """
    if pooling not in ("frame", "segment", "clip"):
        raise ValueError(f"pooling must be 'frame', 'segment' or 'clip', got {pooling!r}")
    groups = split_groups(frames, split)  # the workbench's one group rule (source, speaker, clip)
    labels, col = _labels(frames, target)
    is_tier = f"{col}_seg" in frames
    if control_types == "context":
        types = _segment_types(frames, col, labels) if is_tier else frames["clip_id"].astype(str).to_numpy()
    elif control_types == "label":
        types = labels.to_numpy(dtype=object)
    elif control_types in frames:
        types = _column(frames, control_types).to_numpy()
    else:
        raise KeyError(f"control_types {control_types!r}: use 'context', 'label' or a frame-table column")
    ok = labels.notna().to_numpy().copy()
    missing = ok & np.array([g is None for g in groups], dtype=bool)
    if missing.any():
        raise ValueError(
            f"split={split!r}: {int(missing.sum())} labelled frames have no {split} "
            f"(e.g. clip {frames['clip_id'].to_numpy()[missing][0]!r}); use split='clip'"
        )
    if pooling == "frame":
        rows = np.flatnonzero(ok)
        tgt = Target(target, rows, labels.to_numpy(dtype=object)[rows], groups[rows], np.asarray(types)[rows])
    else:
        if pooling == "segment":
            if not is_tier:
                raise ValueError(f"pooling='segment' needs a tier target; {target!r} has no '{col}_seg' column")
            ok &= frames[f"{col}_seg"].to_numpy() >= 0
            key = frames["clip_id"].astype(str) + "\x00" + frames[f"{col}_seg"].astype(str)
        else:
            key = frames["clip_id"].astype(str)
        rows = np.flatnonzero(ok)
        codes = pd.factorize(key.to_numpy()[rows])[0]
        first = rows[np.unique(codes, return_index=True)[1]]  # first frame of each sample
        counts = np.bincount(codes)
        pool = sp.csr_matrix((1.0 / counts[codes], (codes, np.arange(len(rows)))), shape=(len(counts), len(rows)))
        tgt = Target(target, rows, labels.to_numpy(dtype=object)[first], groups[first], np.asarray(types)[first], pool)
    if len(tgt) == 0:
        raise ValueError(f"target {target!r}: no labelled samples in the frame table")
    if max_samples is not None and len(tgt) > max_samples:
        tgt = subsample(tgt, max_samples, seed)
    return tgt


def subsample(t: Target, n: int, seed: int = 0) -> Target:
    """A seeded random subset of ``n`` samples (keeping only the activation rows they need)."""
    keep = np.sort(np.random.default_rng(seed).choice(len(t), size=n, replace=False))
    if t.pool is None:
        return Target(t.name, t.rows[keep], t.y[keep], t.groups[keep], t.types[keep])
    pool = t.pool[keep]
    used = np.unique(pool.indices)
    return Target(t.name, t.rows[used], t.y[keep], t.groups[keep], t.types[keep], pool[:, used].tocsr())
