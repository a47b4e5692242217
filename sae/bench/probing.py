"""k-sparse probing (SAEBench): how well k SAE features read out a concept, against the same
probe on k raw activation dimensions and a dense probe on all of them.

For each binary task (one class against the rest of a tier: a phone, a word, a speaker, a domain),
on the training frames the k columns with the largest standardised mean difference between the
classes are kept and a class-balanced logistic regression (scikit-learn) is fit on them; the
score is the balanced accuracy on test frames from other groups (speakers or clips: never split by
frame). Scores are averaged over a tier's classes.

Example
-------
>>> res = sparse_probe_task(Z, X, y, train)                          # doctest: +SKIP
>>> res["sae"][1], res["raw"][1], res["raw_full"], res["features"][1] # doctest: +SKIP
(0.91, 0.64, 0.97, [1234])
"""
from __future__ import annotations

import numpy as np
import pandas as pd

KS = (1, 2, 5, 20)
#: task -> (frame-table column, how train and test are kept apart: workbench.conventions.frame_groups ``by``)
TASKS = {"phones": ("phones", "speaker"), "words": ("words", "speaker"), "speaker": ("speaker", "clip"),
         "domain": ("domain", "clip")}


def rank_columns(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Columns of ``A`` by decreasing |mean difference| between ``y == 1`` and ``y == 0`` over the pooled std."""
    a1, a0 = A[y == 1], A[y == 0]
    pooled = np.sqrt(0.5 * (a1.var(0) + a0.var(0))) + 1e-8
    effect = np.abs(a1.mean(0) - a0.mean(0)) / pooled
    effect[(A != 0).sum(0) == 0] = -1
    return np.argsort(-effect, kind="stable")


def _probe_score(A_tr, y_tr, A_te, y_te, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    if np.allclose(A_tr.std(0), 0):
        return 0.5
    sc = StandardScaler().fit(A_tr)
    clf = LogisticRegression(max_iter=500, class_weight="balanced", random_state=seed).fit(sc.transform(A_tr), y_tr)
    return float(balanced_accuracy_score(y_te, clf.predict(sc.transform(A_te))))


def sparse_probe_task(Z: np.ndarray, X: np.ndarray, y: np.ndarray, train: np.ndarray, ks=KS, dense: bool = True,
                      seed: int = 0) -> dict:
    """One binary task: ``{"sae": {k: acc}, "raw": {k: acc}, "raw_full": acc, "features": {k: [...]}}``
    for codes ``Z`` and activations ``X`` (same frames), labels ``y`` (0/1) and a boolean ``train`` mask."""
    y = np.asarray(y).astype(int)
    train = np.asarray(train, dtype=bool)
    test = ~train
    out = {"sae": {}, "raw": {}, "features": {}}
    rz, rx = rank_columns(Z[train], y[train]), rank_columns(X[train], y[train])
    for k in ks:
        cz, cx = rz[:k], rx[:k]
        out["sae"][k] = _probe_score(Z[train][:, cz], y[train], Z[test][:, cz], y[test], seed)
        out["raw"][k] = _probe_score(X[train][:, cx], y[train], X[test][:, cx], y[test], seed)
        out["features"][k] = [int(c) for c in cz]
    if dense:
        out["raw_full"] = _probe_score(X[train], y[train], X[test], y[test], seed)
    return out


def _group_split(groups: np.ndarray, seed: int, fraction: float = 0.3) -> np.ndarray | None:
    names = np.unique(groups)
    if len(names) < 2:
        return None
    rng = np.random.default_rng(seed)
    n_test = max(1, min(len(names) - 1, round(fraction * len(names))))
    test = set(rng.permutation(names)[:n_test])
    return np.array([g not in test for g in groups])


def sparse_probing(Z: np.ndarray, X: np.ndarray, frames: pd.DataFrame, ks=KS, n_classes: int = 5,
                   min_frames: int = 40, max_frames: int = 6000, seed: int = 0, dense: bool = True) -> dict:
    """:func:`sparse_probe_task` for the ``n_classes`` most frequent classes of each task in :data:`TASKS`
    present in ``frames`` (phones and words: speaker-disjoint; speaker and domain: clip-disjoint, by
    :func:`workbench.conventions.frame_groups`; "sil" is not a phone class). Returns ``{task: {"sae": {k: mean acc}, "raw": {...}, "raw_full", "classes": {...}}}``."""
    frames = frames.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    out = {}
    from workbench.conventions import frame_groups

    groups = {by: frame_groups(frames, by=by) for by in {b for _, b in TASKS.values()}}
    for task, (col, group_col) in TASKS.items():
        if col not in frames:
            continue
        lab = frames[col].to_numpy(dtype=object)
        has = np.array([pd.notna(v) and v != "sil" for v in lab])
        if task == "domain":
            has = np.array([pd.notna(v) for v in lab])
        rows = np.flatnonzero(has)
        if len(rows) > max_frames:
            rows = np.sort(rng.choice(rows, max_frames, replace=False))
        train = _group_split(groups[group_col][rows], seed)
        if train is None:
            continue
        labels = pd.Series(lab[rows]).astype(str)
        counts = labels[train].value_counts()
        test_counts = labels[~train].value_counts()
        classes = [c for c in counts.index if counts[c] >= min_frames and test_counts.get(c, 0) >= min_frames // 4]
        classes = classes[:n_classes] if task != "domain" or len(classes) > 2 else classes[:1]
        per = {}
        for c in classes:
            y = (labels == c).to_numpy().astype(int)
            if len(set(y[train])) < 2 or len(set(y[~train])) < 2:
                continue
            per[c] = sparse_probe_task(Z[rows], X[rows], y, train, ks, dense, seed)
        if per:
            out[task] = {"sae": {k: float(np.mean([r["sae"][k] for r in per.values()])) for k in ks},
                         "raw": {k: float(np.mean([r["raw"][k] for r in per.values()])) for k in ks},
                         "split_by": group_col, "frames": len(rows), "classes": per}
            if dense:
                out[task]["raw_full"] = float(np.mean([r["raw_full"] for r in per.values()]))
    return out
