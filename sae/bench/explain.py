"""Explanations of SAE features without a language model: a short rule over frame labels, scored
on held-out clips.

For each feature, on the *fit* clips: for every tier (:mod:`sae.bench.labels`) the best union of at
most ``max_or`` of its labels (labels of a tier are exclusive, so the best union by F1 is a prefix
of the labels sorted by precision), the best tier, then optionally one extra condition from another
tier ("phone S or Z; speech") when it raises the fit F1 by ``min_gain``. The rule is then scored on
the *test* clips (disjoint from the fit clips): ``precision`` = P(fires | rule), ``recall`` =
P(rule | fires), ``f1``; the reverse direction (the feature predicting the rule) has those two
swapped (``rev_precision``, ``rev_recall``). A rule counts as above chance when, on the test clips,
its true positives exceed those of a random rule of the same size by ``z_min`` binomial standard
deviations and its precision is at least ``min_lift`` times the feature's firing rate; otherwise the
explanation says ``no rule above chance`` (its scores are those of the best rule tried).

Example
-------
>>> table = explain_features(fires, concepts, fit_rows)                           # doctest: +SKIP
>>> table[["feature", "explanation", "precision", "recall", "f1"]].head()         # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from sae.bench.labels import Concepts

COLUMNS = ["feature", "explanation", "precision", "recall", "f1"]
NO_RULE = "no rule above chance"
DEAD = "never fires on these clips"


def split_by_group(groups, fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """Boolean ``fit`` mask over frames: about ``fraction`` of the distinct ``groups`` (clip ids),
    drawn with ``seed``; the rest are the test frames."""
    groups = np.asarray(groups, dtype=object).astype(str)
    names = np.unique(groups)
    if len(names) < 2:
        raise ValueError(f"explanations need frames from at least 2 clips to score rules on held-out clips, got {len(names)}")
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(names)[: max(1, min(len(names) - 1, round(fraction * len(names))))])
    return np.array([g in chosen for g in groups])


def _fires_sparse(fires) -> sparse.csr_matrix:
    return (fires if sparse.issparse(fires) else sparse.csr_matrix(np.asarray(fires) > 0)).astype(np.float32).tocsr()


def _rule_counts(F: sparse.csr_matrix, c: Concepts, base_tier: np.ndarray, sel: np.ndarray, cond: np.ndarray):
    """Per feature f: frames of its rule and true positives. The rule is "label of tier base_tier[f]
    in sel[:, f]" and, where cond[f] >= 0, "concept cond[f] holds"."""
    m = F.shape[1]
    oh = c.onehot()
    cooc = (oh.T @ oh).toarray()                            # [nc, nc] co-occurrence counts
    n_label = np.asarray(oh.sum(0)).ravel()
    n_rule = np.where(cond >= 0, (cooc[np.maximum(cond, 0)] * sel.T).sum(1), (n_label[:, None] * sel).sum(0))
    F = F.tocoo()
    rows, cols = F.row, F.col
    ok = base_tier[cols] >= 0
    lab = np.where(ok, c.lab[np.maximum(base_tier[cols], 0), rows], -1)
    hit = ok & (lab >= 0) & sel[np.maximum(lab, 0), cols]
    q = cond[cols]
    hit &= (q < 0) | (c.lab[c.tier_of[np.maximum(q, 0)], rows] == q)
    tp = np.bincount(cols[hit], minlength=m).astype(np.float64)
    return n_rule.astype(np.float64), tp


def _best_union(tp: np.ndarray, nr: np.ndarray, n_fire: np.ndarray, max_or: int):
    """For one tier: ``tp [L, m]`` label x feature overlaps, ``nr [L]`` label sizes -> best prefix
    (by precision) per feature: (f1 [m], chosen label positions [max_or, m] with -1 padding)."""
    m = tp.shape[1]
    prec = tp / np.maximum(nr[:, None], 1)
    order = np.argsort(-prec, axis=0, kind="stable")[:max_or]          # [k, m]
    tps = np.take_along_axis(tp, order, 0).cumsum(0)
    nrs = nr[order].cumsum(0)
    f1 = 2 * tps / np.maximum(nrs + n_fire[None, :], 1)
    best = f1.argmax(0)
    chosen = np.where(np.arange(len(order))[:, None] <= best[None, :], order, -1)
    chosen[:, tps[best, np.arange(m)] == 0] = -1
    return f1[best, np.arange(m)], chosen


def fit_rules(F: sparse.csr_matrix, c: Concepts, max_or: int = 3, min_gain: float = 0.02):
    """Rules per feature on frames ``F [N, m]`` (fit clips): ``(base_tier [m], sel [nc, m] bool, cond [m], fit_f1 [m])``."""
    m, nc = F.shape[1], len(c.names)
    oh = c.onehot()
    tp_all = np.asarray((oh.T @ F).todense())                           # [nc, m]
    n_label = np.asarray(oh.sum(0)).ravel()
    n_fire = np.asarray(F.sum(0)).ravel()
    best_f1 = np.zeros(m)
    base_tier = np.full(m, -1)
    sel = np.zeros((nc, m), dtype=bool)
    for t in range(len(c.tiers)):
        idx = np.flatnonzero(c.tier_of == t)
        f1, chosen = _best_union(tp_all[idx], n_label[idx], n_fire, max_or)
        better = f1 > best_f1
        best_f1[better], base_tier[better] = f1[better], t
        sel[:, better] = False
        for row in chosen:
            keep = better & (row >= 0)
            sel[idx[row[keep]], np.flatnonzero(keep)] = True
    cond = np.full(m, -1)
    # one extra condition from another tier: counts of (rule AND concept q) for every q at once
    n_rule_q = (oh.T @ oh).toarray() @ sel                              # [nc(q), m]: |rule & q| per feature
    Fc = F.tocoo()
    rows, cols = Fc.row, Fc.col
    ok = base_tier[cols] >= 0
    lab = np.where(ok, c.lab[np.maximum(base_tier[cols], 0), rows], -1)
    hit = ok & (lab >= 0) & sel[np.maximum(lab, 0), cols]
    RF = sparse.csr_matrix((np.ones(hit.sum(), np.float32), (rows[hit], cols[hit])), shape=F.shape)
    tp_q = np.asarray((oh.T @ RF).todense())                            # [nc(q), m]
    f1_q = 2 * tp_q / np.maximum(n_rule_q + n_fire[None, :], 1)
    f1_q[c.tier_of[:, None] == base_tier[None, :]] = 0                  # another tier only
    q_best = f1_q.argmax(0)
    gain = f1_q[q_best, np.arange(m)] - best_f1
    use = (gain > min_gain) & (base_tier >= 0)
    cond[use] = q_best[use]
    best_f1[use] = f1_q[q_best, np.arange(m)][use]
    return base_tier, sel, cond, best_f1


def rule_text(c: Concepts, base_tier: int, sel_col: np.ndarray, cond: int) -> str:
    """"phone S or Z; speech" for a rule (labels of the base tier OR-ed, then the extra condition)."""
    if base_tier < 0:
        return ""
    labels = [c.names[i] for i in np.flatnonzero(sel_col)]
    tier = c.tiers[base_tier]
    prefix = tier + " " if all(lab.startswith(tier + " ") for lab in labels) and tier not in ("domain", "voicing") else ""
    text = prefix + " or ".join(lab[len(prefix):] for lab in labels)
    return text + (f"; {c.names[cond]}" if cond >= 0 else "")


def explain_features(fires, concepts: Concepts, fit: np.ndarray, max_or: int = 3, min_gain: float = 0.02,
                     z_min: float = 4.0, min_lift: float = 1.5, min_fires: int = 5) -> pd.DataFrame:
    """One row per feature: ``feature, explanation, precision, recall, f1`` (held out; module
    docstring), then ``rev_precision, rev_recall, fit_f1, chance_f1, z, lift, above_chance, tier,
    fires_test, rule_frames_test``. ``fires [N, m]``: codes or firing indicators; ``fit``: boolean
    mask of the frames to find rules on (the others score them)."""
    F = _fires_sparse(fires)
    fit = np.asarray(fit, dtype=bool)
    if len(fit) != F.shape[0] or concepts.n != F.shape[0]:
        raise ValueError(f"explain_features: {F.shape[0]} frames of codes, {len(fit)} fit flags, {concepts.n} labelled frames")
    m = F.shape[1]
    fit_rows, test_rows = np.flatnonzero(fit), np.flatnonzero(~fit)
    base_tier, sel, cond, fit_f1 = fit_rules(F[fit_rows], concepts.subset(fit_rows), max_or, min_gain)
    Ft = F[test_rows]
    ct = concepts.subset(test_rows)
    n_rule, tp = _rule_counts(Ft, ct, base_tier, sel, cond)
    n_fire = np.asarray(Ft.sum(0)).ravel()
    n_test = max(len(test_rows), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_rule > 0, tp / n_rule, 0.0)
        recall = np.where(n_fire > 0, tp / n_fire, 0.0)
        f1 = np.where(tp > 0, 2 * tp / (n_rule + n_fire), 0.0)
        p = n_fire / n_test
        expected = n_rule * p
        z = np.where(expected > 0, (tp - expected) / np.sqrt(np.maximum(expected * (1 - p), 1e-12)), 0.0)
        lift = np.where(p > 0, precision / p, 0.0)
        chance = np.where(n_rule + n_fire > 0, 2 * expected / (n_rule + n_fire), 0.0)
    fit_fires = np.asarray(F[fit_rows].sum(0)).ravel()
    above = (z >= z_min) & (lift >= min_lift) & (tp >= 3) & (base_tier >= 0)
    texts = []
    for f in range(m):
        if fit_fires[f] + n_fire[f] == 0:
            texts.append(DEAD)
        elif fit_fires[f] < min_fires or base_tier[f] < 0:
            texts.append(f"{NO_RULE} (fires {int(fit_fires[f])}x on the fit clips)")
            above[f] = False
        else:
            rule = rule_text(concepts, int(base_tier[f]), sel[:, f], int(cond[f]))
            texts.append(rule if above[f] else f"{NO_RULE} (best tried: {rule})")
    return pd.DataFrame({
        "feature": np.arange(m), "explanation": texts, "precision": precision, "recall": recall, "f1": f1,
        "rev_precision": recall, "rev_recall": precision, "fit_f1": fit_f1, "chance_f1": chance, "z": z, "lift": lift,
        "above_chance": above, "tier": [concepts.tiers[t] if t >= 0 else "" for t in base_tier],
        "fires_test": n_fire.astype(int), "rule_frames_test": n_rule.astype(int)})


def f1_distribution(table: pd.DataFrame, thresholds=(0.3, 0.5, 0.7)) -> dict:
    """Summary of held-out F1 over live features (firing on the test clips): quantiles and the share
    of live features with an above-chance explanation of F1 >= each threshold."""
    live = table[table["fires_test"] > 0]
    f1 = np.where(live["above_chance"], live["f1"], 0.0)
    out = {"live_features": len(live), "explained": int(live["above_chance"].sum()),
           "explained_frac": float(live["above_chance"].mean()) if len(live) else float("nan")}
    if len(live):
        out.update({f"f1_q{int(q * 100)}": float(np.quantile(f1, q)) for q in (0.25, 0.5, 0.75, 0.9)})
        out.update({f"frac_f1_ge_{t}": float((f1 >= t).mean()) for t in thresholds})
        out["by_tier"] = {str(k): int(v) for k, v in live[live["above_chance"]]["tier"].value_counts().items()}
    return out
