"""Group statistics over subjects: sign-flip tests per channel, cluster correction over channels,
the group layer curve with subject-level intervals, paired layer tests and their consistency.

Inputs are the per-subject tables :func:`neuro.sets.subject_tables` makes. Each subject's held-out
r per (feature set, channel) is Fisher-z transformed; the group test flips the sign of whole
subjects (:func:`neuro.stats.sign_flip_test`: exact over all ``2^S`` patterns up to ``n_perm``),
one-sided (r > 0). A cross-validated r is centred at or below zero under the null, so the test is
valid and slightly conservative. Corrections, each within one feature set: Benjamini-Hochberg over
channels (``p_fdr``) and, where the channels have positions, a cluster-based permutation test
over neighbouring channels (``mne.stats.permutation_cluster_1samp_test`` with the montage's
adjacency from ``mne.channels.find_ch_adjacency``; ``p_cluster`` is the p of the cluster a channel
belongs to, 1 when it is in none).

Example
-------
>>> g = group_tables({"sub-01": tables1, "sub-02": tables2, ...}, info=raw.info)   # doctest: +SKIP
>>> g["group"].query("significant")                                              # doctest: +SKIP
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import stats as sp_stats

from neuro.sets import layer_tests
from neuro.stats import fdr, sign_flip_test

log = logging.getLogger(__name__)

__all__ = ["group_tables", "channel_adjacency", "cluster_test", "layer_consistency"]


def channel_adjacency(info, ch_names: list[str]):
    """Sparse channel adjacency of ``ch_names`` from the montage in ``info`` (None without positions)."""
    if info is None or info.get_montage() is None:
        return None
    import mne

    picked = mne.pick_info(info, [info.ch_names.index(c) for c in ch_names])
    try:
        adj, names = mne.channels.find_ch_adjacency(picked, ch_type=None)
    except Exception as e:  # no positions, or a channel type without a template
        log.warning("no channel adjacency for the cluster test: %s", e)
        return None
    order = [names.index(c) for c in ch_names]
    return adj[order][:, order]


def cluster_test(z: np.ndarray, adjacency, n_perm: int = 10000, seed: int = 0, alpha: float = 0.05
                 ) -> np.ndarray:
    """``p_cluster [C]`` from a one-sided cluster permutation test of ``z [subjects, C]`` (mean > 0)."""
    from mne.stats import permutation_cluster_1samp_test

    n = len(z)
    threshold = float(sp_stats.t.ppf(1 - alpha, n - 1))
    _, clusters, p_clusters, _ = permutation_cluster_1samp_test(
        z, threshold=threshold, n_permutations=min(n_perm, 2**n), tail=1, adjacency=adjacency, out_type="mask",
        rng=seed, verbose="error")
    out = np.ones(z.shape[1])
    for mask, p in zip(clusters, p_clusters):
        out[np.asarray(mask, dtype=bool)] = np.minimum(out[np.asarray(mask, dtype=bool)], p)
    return out


def layer_consistency(curves: pd.DataFrame) -> dict[str, Any]:
    """``curves``: subjects x model sets (mean r). Leave-one-out Spearman correlation of each subject's
    curve with the mean of the others, and how many subjects share the group's best set."""
    if curves.shape[1] < 2 or len(curves) < 2:
        return {"loo_spearman_mean": None, "loo_spearman": {}, "best": None, "best_agreement": None}
    loo = {}
    for s in curves.index if curves.shape[1] >= 3 else []:  # a rank correlation of 2 points is +-1
        others = curves.drop(index=s).mean(0)
        loo[s] = float(sp_stats.spearmanr(curves.loc[s], others).statistic)
    best = str(curves.mean(0).idxmax())
    return {"loo_spearman_mean": float(np.nanmean(list(loo.values()))) if loo else None, "loo_spearman": loo,
            "best": best, "best_agreement": float((curves.idxmax(axis=1) == best).mean())}


def _ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return (float(x.mean()) if len(x) else np.nan), np.nan, np.nan
    half = sp_stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def group_tables(subjects: Mapping[str, Mapping[str, pd.DataFrame]], *, info=None, ceiling: np.ndarray | None = None,
                 ceiling_channels: list[str] | None = None, n_perm: int = 10000, seed: int = 0) -> dict[str, Any]:
    """Group tables from ``{subject: {"summary", "layers", "partition"}}``.

    Returns ``group`` (feature, kind, channel, n_subjects, r_mean, z_mean, p, p_fdr, significant,
    p_cluster, significant_cluster, r_ceiling, r_norm), ``layers`` (feature, kind, r_mean, r_ci_low,
    r_ci_high, delta_r2_mean, delta_r2_ci_low, delta_r2_ci_high, n_subjects, order), ``tests``
    (paired layer tests across subjects), ``partition`` (mean over subjects per feature, channel)
    and ``meta`` (number of sign flips, smallest reachable p, corrections, consistency).
    """
    names = list(subjects)
    summaries = {s: subjects[s]["summary"] for s in names}
    channels = [c for c in summaries[names[0]]["channel"].drop_duplicates() if
                all(c in set(summaries[s]["channel"]) for s in names[1:])]
    features = list(summaries[names[0]]["feature"].drop_duplicates())
    kinds = summaries[names[0]].drop_duplicates("feature").set_index("feature")["kind"]
    adjacency = channel_adjacency(info, channels) if info is not None else None
    ceil = pd.Series(np.nan, index=channels)
    if ceiling is not None:
        ceil.update(pd.Series(ceiling, index=ceiling_channels or channels))
    rows, n_flips = [], 0
    for feat in features:
        r = np.stack([summaries[s][summaries[s]["feature"] == feat].set_index("channel").loc[channels, "r"]
                      .to_numpy(dtype=np.float64) for s in names])  # [S, C]
        z = np.arctanh(np.clip(r, -0.999999, 0.999999))
        z_mean, p, n_flips = sign_flip_test(z, n_perm=n_perm, seed=seed)
        reject, p_fdr = fdr(p)
        p_cl = cluster_test(z, adjacency, n_perm, seed) if adjacency is not None and len(names) >= 3 else \
            np.full(len(channels), np.nan)
        r_mean = r.mean(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r_norm = np.where(ceil.to_numpy() > 0, r_mean / ceil.to_numpy(), np.nan)
        for c, ch in enumerate(channels):
            rows.append({"feature": feat, "kind": kinds[feat], "channel": ch, "n_subjects": len(names),
                         "r_mean": r_mean[c], "z_mean": z_mean[c], "p": p[c], "p_fdr": p_fdr[c],
                         "significant": bool(reject[c]), "p_cluster": p_cl[c],
                         "significant_cluster": bool(p_cl[c] < 0.05) if np.isfinite(p_cl[c]) else False,
                         "r_ceiling": ceil.iloc[c], "r_norm": r_norm[c]})
    group = pd.DataFrame(rows)
    layer_rows, curves = [], {}
    for order, feat in enumerate(features):
        per_sub = pd.concat([subjects[s]["layers"].set_index("feature").loc[[feat]] for s in names])
        r_m, r_lo, r_hi = _ci(per_sub["r_mean"].to_numpy())
        d_m, d_lo, d_hi = _ci(per_sub["delta_r2_mean"].to_numpy(dtype=np.float64))
        layer_rows.append({"feature": feat, "kind": kinds[feat], "r_mean": r_m, "r_ci_low": r_lo, "r_ci_high": r_hi,
                           "delta_r2_mean": d_m, "delta_r2_ci_low": d_lo, "delta_r2_ci_high": d_hi,
                           "n_significant": int(group.loc[group["feature"] == feat, "significant"].sum()),
                           "n_subjects": len(names), "order": order})
        if kinds[feat] in ("layer", "sae"):
            curves[feat] = per_sub["r_mean"].to_numpy()
    layers = pd.DataFrame(layer_rows)
    curve_df = pd.DataFrame(curves, index=names)
    tests = layer_tests({f: curve_df[f].to_numpy() for f in curve_df}, "subject", n_perm=n_perm, seed=seed)
    parts = [subjects[s]["partition"] for s in names if len(subjects[s]["partition"])]
    partition = (pd.concat(parts).groupby(["feature", "channel"], sort=False).mean(numeric_only=True).reset_index()
                 if parts else pd.DataFrame())
    meta = {"subjects": names, "channels": channels, "n_sign_flips": n_flips, "min_p": 1.0 / n_flips if n_flips else None,
            "exact": bool(2 ** len(names) <= n_perm), "tail": "one-sided (r > 0)", "statistic": "mean Fisher z of r",
            "corrections": ["fdr_bh over channels within each feature set"] +
                           (["cluster permutation over adjacent channels (mne)"] if adjacency is not None else []),
            "layer_consistency": layer_consistency(curve_df)}
    return {"group": group, "layers": layers, "tests": tests, "partition": partition, "meta": meta}
