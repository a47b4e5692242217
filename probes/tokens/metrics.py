"""Token statistics on integer tracks: usage, purity / mutual information, edit distances.

Everything here works on plain arrays: ``ids`` is ``[N]`` or ``[N, K]`` (K codebooks, e.g. the
RVQ levels of a codec), one row per frame.

- :func:`usage`: per codebook, codes in use, entropy (bits), perplexity ``2 ** entropy``;
- :func:`rank_frequency`: counts sorted by rank, per codebook;
- :func:`purity_mi`: the token analogue of a probe: purity (share of frames whose token's most
  frequent label is their label) and plug-in mutual information ``I(token; label)`` in bits,
  each beside its chance value (the same tokens shuffled over frames);
- :func:`unit_edit_distance`: Levenshtein distance / reference length (RapidFuzz), on the raw
  frame sequence or with runs of a repeated unit collapsed.

Example
-------
>>> import numpy as np
>>> ids = np.array([0, 0, 1, 1, 2, 2])
>>> row = usage(ids).iloc[0]
>>> int(row["codes_used"]), round(float(row["entropy_bits"]), 3), round(float(row["perplexity"]), 3)
(3, 1.585, 3.0)
>>> labels = np.array(["a", "a", "b", "b", "c", "c"], dtype=object)
>>> round(purity_mi(ids, labels)["purity"], 3), round(purity_mi(ids, labels)["mi_bits"], 3)
(1.0, 1.585)
>>> unit_edit_distance([1, 2, 3, 4], [1, 2, 9, 4])
0.25
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["as_2d", "dedup", "entropy_bits", "purity_mi", "rank_frequency", "unit_edit_distance", "usage"]


def as_2d(ids) -> np.ndarray:
    """``[N]`` or ``[N, K]`` integer ids -> int64 ``[N, K]`` (a clear error for anything else)."""
    a = np.asarray(ids)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"token ids must be [N] or [N, K], got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer) and (
            not np.all(np.isfinite(a)) or not np.all(a == np.round(a))):
        raise ValueError("token ids must be integers (is this a float hook? use `workbench tokens units`)")
    return a.astype(np.int64, copy=False)


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of a count vector."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if not len(c):
        return 0.0
    p = c / c.sum()
    return max(float(-(p * np.log2(p)).sum()), 0.0)


def usage(ids) -> pd.DataFrame:
    """Per codebook: ``codebook, frames, codes_used, entropy_bits, perplexity``."""
    a = as_2d(ids)
    rows = []
    for k in range(a.shape[1]):
        _, counts = np.unique(a[:, k], return_counts=True)
        h = entropy_bits(counts)
        rows.append({"codebook": k, "frames": len(a), "codes_used": len(counts), "entropy_bits": h,
                     "perplexity": float(2.0 ** h)})
    return pd.DataFrame(rows, columns=["codebook", "frames", "codes_used", "entropy_bits", "perplexity"])


def rank_frequency(ids) -> pd.DataFrame:
    """Long table ``codebook, rank, code, count, share`` (rank 1 = most frequent)."""
    a = as_2d(ids)
    parts = []
    for k in range(a.shape[1]):
        codes, counts = np.unique(a[:, k], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        parts.append(pd.DataFrame({"codebook": k, "rank": np.arange(1, len(order) + 1), "code": codes[order],
                                   "count": counts[order], "share": counts[order] / max(len(a), 1)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["codebook", "rank", "code", "count", "share"])


def _contingency(tokens: np.ndarray, labels: np.ndarray) -> np.ndarray:
    _, ti = np.unique(tokens, return_inverse=True)
    _, li = np.unique(labels, return_inverse=True)
    table = np.zeros((ti.max() + 1, li.max() + 1), dtype=np.int64)
    np.add.at(table, (ti, li), 1)
    return table


def _purity_mi_table(table: np.ndarray) -> tuple[float, float]:
    n = table.sum()
    purity = float(table.max(axis=1).sum() / n)
    p = table / n
    pt, pl = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    mi = float((p[nz] * np.log2(p[nz] / (pt @ pl)[nz])).sum())
    return purity, max(mi, 0.0)


def purity_mi(tokens, labels, seed: int = 0) -> dict:
    """Purity and mutual information of ``tokens`` ``[N]`` against ``labels`` ``[N]`` (None / NaN /
    "" labels are left out), with chance values from the tokens shuffled over the labelled frames.

    Returns ``frames, classes, purity, purity_chance, majority, mi_bits, mi_chance_bits,
    label_entropy_bits, mi_norm`` (``mi_norm`` = ``mi_bits / label_entropy_bits``: 1 when the
    tokens determine the label). Both plug-in estimates grow with the number of distinct tokens;
    compare a source with its ``*_chance`` value and with sources of the same size.
    """
    t = np.asarray(tokens).reshape(-1)
    lab = pd.Series(np.asarray(labels, dtype=object).reshape(-1))
    if len(t) != len(lab):
        raise ValueError(f"tokens ({len(t)}) and labels ({len(lab)}) differ in length")
    keep = lab.notna().to_numpy() & (lab.astype(str) != "").to_numpy()
    t, lab = t[keep], lab[keep].astype(str).to_numpy()
    out = {"frames": len(t), "classes": len(set(lab))}
    if not len(t):
        return {**out, **dict.fromkeys(["purity", "purity_chance", "majority", "mi_bits", "mi_chance_bits",
                                        "label_entropy_bits", "mi_norm"], float("nan"))}
    table = _contingency(t, lab)
    purity, mi = _purity_mi_table(table)
    shuffled = np.random.default_rng(seed).permutation(t)
    purity0, mi0 = _purity_mi_table(_contingency(shuffled, lab))
    h_label = entropy_bits(table.sum(0))
    return {**out, "purity": purity, "purity_chance": purity0, "majority": float(table.sum(0).max() / len(t)),
            "mi_bits": mi, "mi_chance_bits": mi0, "label_entropy_bits": h_label,
            "mi_norm": mi / h_label if h_label > 0 else float("nan")}


def dedup(seq: Sequence[int]) -> np.ndarray:
    """Collapse runs of a repeated unit: ``[1, 1, 2, 2, 1] -> [1, 2, 1]``."""
    a = np.asarray(seq).reshape(-1)
    if not len(a):
        return a
    return a[np.concatenate([[True], a[1:] != a[:-1]])]


def unit_edit_distance(ref: Sequence[int], hyp: Sequence[int], collapse: bool = False) -> float:
    """Levenshtein distance (substitutions, insertions, deletions of units) / ``len(ref)``.

    ``collapse``: on sequences with repeated units collapsed (:func:`dedup`)."""
    from rapidfuzz.distance import Levenshtein

    r, h = np.asarray(ref).reshape(-1), np.asarray(hyp).reshape(-1)
    if collapse:
        r, h = dedup(r), dedup(h)
    if not len(r):
        return float(len(h) > 0)
    return Levenshtein.distance(r.tolist(), h.tolist()) / len(r)
