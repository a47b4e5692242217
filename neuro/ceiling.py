"""Noise ceiling: how much of a channel's variance any stimulus model could explain.

Where the same stimulus was heard more than once (repeated trials of one clip within a subject,
or the same clip across subjects with the same channels), the explainable variance per channel is
the share of the response variance that is common to the repeats (the voxelwise-modelling
tutorials' ``explainable_variance``, with their bias correction):
``ev = var(mean over repeats) / mean over repeats of var - (1 - ev) / (n_repeats - 1)``.
The correlation ceiling of a model predicting one repeat is ``sqrt(ev)`` (for ``y = s + noise``,
no function of the stimulus correlates with ``y`` better than ``s`` does), and a model's r
normalised by it is ``r / sqrt(ev)``. Across subjects the ceiling is conservative: what differs
between subjects counts as noise.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> s = rng.normal(size=(5000, 2)) * [1.0, 0.0]                 # channel 0 carries a shared signal
>>> reps = np.stack([s + rng.normal(size=(5000, 2)) for _ in range(4)])
>>> ev = explainable_variance(reps)
>>> bool(abs(ev[0] - 0.5) < 0.03 and abs(ev[1]) < 0.01)
True
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

__all__ = ["explainable_variance", "ceiling_from_trials", "ceiling_across_subjects", "r_ceiling"]


def explainable_variance(data: np.ndarray, bias_correction: bool = True) -> np.ndarray:
    """``data [n_repeats, n_times, C]`` -> explainable variance per channel ``[C]``."""
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 3 or len(data) < 2:
        raise ValueError(f"explainable variance needs [repeats >= 2, times, channels], got shape {data.shape}")
    data = data - data.mean(1, keepdims=True)
    mean_var = data.var(axis=1).mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ev = np.where(mean_var > 0, data.mean(0).var(axis=0) / mean_var, np.nan)
    if bias_correction:
        ev = ev - (1.0 - ev) / (len(data) - 1)
    return ev


def r_ceiling(ev: np.ndarray) -> np.ndarray:
    """The correlation ceiling ``sqrt(ev)`` (0 where ev <= 0, NaN where unknown)."""
    ev = np.asarray(ev, dtype=np.float64)
    return np.where(np.isfinite(ev), np.sqrt(np.clip(ev, 0, None)), np.nan)


def _pooled(groups: Sequence[list[np.ndarray]]) -> tuple[np.ndarray, int]:
    """Explainable variance pooled over stimuli: repeats of each stimulus trimmed to a common length
    and count, laid end to end in time."""
    groups = [g for g in groups if len(g) >= 2]
    if not groups:
        raise ValueError("no stimulus was heard more than once")
    r = min(len(g) for g in groups)
    parts = []
    for g in groups:
        n = min(len(x) for x in g)
        parts.append(np.stack([np.asarray(x[:n], dtype=np.float64) for x in g[:r]]))
    return explainable_variance(np.concatenate(parts, axis=1)), r


def ceiling_from_trials(clip_ids: Sequence[str], trials: Sequence[np.ndarray]) -> tuple[np.ndarray, int] | None:
    """Within one subject: ``(ev [C], n_repeats)`` from clips presented more than once, else None."""
    by_clip: dict[str, list[np.ndarray]] = defaultdict(list)
    for cid, x in zip(clip_ids, trials):
        by_clip[cid].append(x)
    groups = [g for g in by_clip.values() if len(g) >= 2]
    return _pooled(groups) if groups else None


def ceiling_across_subjects(subjects: Sequence[tuple[Sequence[str], Sequence[np.ndarray]]]
                            ) -> tuple[np.ndarray, int] | None:
    """Across subjects with the same channels: ``(ev [C], n_subjects)`` from the clips every
    subject heard (each subject's first presentation), else None."""
    if len(subjects) < 2:
        return None
    firsts = [{cid: x for cid, x in reversed(list(zip(ids, xs)))} for ids, xs in subjects]
    common = [cid for cid in firsts[0] if all(cid in f for f in firsts[1:])]
    if not common:
        return None
    return _pooled([[f[cid] for f in firsts] for cid in common])
