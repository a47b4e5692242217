"""Probing SAE codes instead of raw activations, and AudioSAE-style top-k feature probing.

Saved SAEs are read through :class:`workbench.features.FeatureDictionary`, the one reader of the
SAELens layout (probes does not import the ``sae`` package): one per hook with
:func:`workbench.features.load_feature_dictionaries`, codes with ``encode_numpy``.

Top-k feature probing ranks the SAE latents by how well they separate the classes
(ANOVA F statistic, :func:`sklearn.feature_selection.f_classif`) on the *training*
fold only, then probes on the k best, for a range of k.

Example
-------
>>> enc = FeatureDictionary.load("work/saes/blocks.3")                       # doctest: +SKIP
>>> codes = enc.encode_numpy(cache.load("encoder.blocks.3.hook_resid_post"))  # doctest: +SKIP
>>> curve = topk_sweep(cache, "phones", "work/saes", ks=(1, 8, 64))     # doctest: +SKIP
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.feature_selection import f_classif
from tqdm.auto import tqdm

from probes.controls import majority_baseline
from probes.estimator import LinearProbe
from workbench.features import load_feature_dictionaries

logger = logging.getLogger(__name__)

DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def rank_features(X_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """Feature indices, most class-discriminative first (ANOVA F on training data; dead features last)."""
    with warnings.catch_warnings():  # constant (dead) features give 0/0
        warnings.simplefilter("ignore")
        F, _ = f_classif(X_train, y_train)
    F = np.nan_to_num(F, nan=-1.0, posinf=np.finfo(np.float64).max)
    return np.argsort(-F, kind="stable")


def topk_feature_curve(
    X: np.ndarray,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    ks: Sequence[int] = DEFAULT_KS,
    groups: np.ndarray | None = None,
    probe=None,
) -> pd.DataFrame:
    """Accuracy against k when probing only the k top-ranked features (ranked per training fold).

    Returns one row per (k, fold): ``k``, ``fold``, ``accuracy``, ``majority`` and the
    selected feature indices (``features``, the first 16) so top features can be inspected.
    """
    X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
    probe = LinearProbe() if probe is None else probe
    ks = sorted({int(k) for k in ks if 0 < int(k) <= X.shape[1]})
    if not ks:
        raise ValueError(f"no k in {ks} fits {X.shape[1]} features")
    rows = []
    for fold, (tr, te) in enumerate(splits):
        order = rank_features(X[tr], y[tr])  # test data never sees the ranking
        maj = majority_baseline(y[tr], y[te])
        for k in ks:
            cols = order[:k]
            kw = {"groups": groups[tr]} if groups is not None and isinstance(probe, LinearProbe) else {}
            fitted = clone(probe).fit(X[tr][:, cols], y[tr], **kw)
            acc = float(np.mean(fitted.predict(X[te][:, cols]) == y[te]))
            rows.append({"k": k, "fold": fold, "accuracy": acc, "majority": maj, "features": cols[:16].tolist()})
    return pd.DataFrame(rows)


def topk_sweep(
    cache,
    target: str,
    sae: str | Path,
    ks: Sequence[int] = DEFAULT_KS,
    hooks="all",
    split: str = "speaker",
    folds: int = 5,
    pooling: str = "frame",
    max_frames: int | None = None,
    seed: int = 0,
    probe=None,
    verbose: bool = True,
) -> pd.DataFrame:
    """:func:`topk_feature_curve` for every hook of ``cache`` that has an SAE in ``sae``."""
    from probes.splits import grouped_kfold
    from probes.sweep import resolve_hooks
    from probes.targets import build_target

    encoders = load_feature_dictionaries(sae)
    hook_list = [h for h in resolve_hooks(cache.hooks, hooks) if h in encoders]
    if not hook_list:
        raise ValueError(f"no SAE in {sae} matches the cache hooks; SAEs are for {sorted(encoders)}")
    out = []
    for hook in tqdm(hook_list, desc=f"top-k SAE probe {target}", unit="layer", disable=not verbose):
        tgt = build_target(cache.frames(hook), target, split=split, pooling=pooling, max_samples=max_frames, seed=seed)
        X = tgt.features(encoders[hook].encode_numpy(cache.load(hook, tgt.rows)))
        splits = grouped_kfold(tgt.groups, folds=folds, seed=seed, what=split)
        df = topk_feature_curve(X, tgt.y, splits, ks=ks, groups=tgt.groups, probe=probe)
        df.insert(0, "hook", hook)
        out.append(df)
    return pd.concat(out, ignore_index=True)
