"""Grouped K-fold splits (by speaker or clip) with a leakage check that runs on every fold.

A frame-level probe evaluated on frames from speakers (or clips) it was trained on
measures memorisation of the voice, not linear decodability of the target. Every
split the probes package uses goes through :func:`check_disjoint`, which raises
:class:`LeakageError` when a group appears on both sides; it is a real check in
code (not an ``assert`` statement, which ``python -O`` would strip).

Example
-------
>>> import numpy as np
>>> groups = np.repeat(["s1", "s2", "s3"], 4)
>>> [len(te) for _, te in grouped_kfold(groups, folds=3)]
[4, 4, 4]
"""
from __future__ import annotations

import logging
from typing import Iterable, Iterator

import numpy as np
from sklearn.model_selection import GroupKFold

from workbench.conventions import GROUP_BY, frame_groups

logger = logging.getLogger(__name__)


class LeakageError(AssertionError):
    """A train/test split that shares a group (speaker or clip) between train and test."""


def check_disjoint(train: np.ndarray, test: np.ndarray, groups: np.ndarray, what: str = "group") -> None:
    """Raise :class:`LeakageError` if any ``groups`` value occurs in both ``train`` and ``test`` rows."""
    groups = np.asarray(groups)
    shared = np.intersect1d(groups[np.asarray(train)], groups[np.asarray(test)])
    if len(shared):
        raise LeakageError(
            f"train and test share {len(shared)} {what}(s), e.g. {list(shared[:3])}: "
            "the probe would be scored on data it was trained on"
        )
    if len(np.intersect1d(train, test)):
        raise LeakageError("train and test share rows")


def checked_splits(
    splits: Iterable[tuple[np.ndarray, np.ndarray]], groups: np.ndarray, what: str = "group"
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pass splits through, checking each one with :func:`check_disjoint` (works for any splitter)."""
    for train, test in splits:
        check_disjoint(train, test, groups, what)
        yield np.asarray(train), np.asarray(test)


def split_groups(frames, split: str = "speaker") -> np.ndarray:
    """The split group of each frame-table row.

    ``"speaker"`` (= ``"group"``) and ``"clip"`` follow the workbench's one group rule
    (:func:`workbench.conventions.frame_groups`: clips sharing a source recording or, for
    ``"speaker"``, a speaker are one group; a clip without either is its own). Any other value
    names a frame-table column whose values are the groups (None where missing).
    """
    if split in GROUP_BY:
        return frame_groups(frames, split)
    if split not in frames:
        raise KeyError(f"split {split!r}: not one of {GROUP_BY} and no column {split!r} in the frame table")
    return np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                     for v in frames[split].to_numpy()], dtype=object)


def grouped_kfold(
    groups, folds: int = 5, seed: int = 0, splitter=None, what: str = "group"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K folds in which no group is in both train and test.

    ``folds`` is capped at the number of groups (with a warning): with 4 speakers a
    5-fold speaker split does not exist. ``splitter`` may be any scikit-learn CV
    object with ``split(X, y, groups)``; its output is checked all the same.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) == 0:
        raise ValueError(f"groups must be a non-empty 1-D array, got shape {groups.shape}")
    if groups.dtype == object and any(g is None for g in groups):
        raise ValueError(f"groups contain None: every row needs a {what} (drop unlabelled rows first)")
    n_groups = len(np.unique(groups))
    if splitter is None:
        if n_groups < 2:
            raise ValueError(f"a grouped split needs at least 2 {what}s, got {n_groups}")
        if folds > n_groups:
            logger.warning("only %d %ss: using %d folds instead of %d", n_groups, what, n_groups, folds)
            folds = n_groups
        if folds < 2:
            raise ValueError(f"folds must be >= 2, got {folds}")
        try:
            splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        except TypeError:  # scikit-learn < 1.6 has no shuffling GroupKFold
            splitter = GroupKFold(n_splits=folds)
    idx = np.arange(len(groups))
    return list(checked_splits(splitter.split(idx, None, groups), groups, what))
