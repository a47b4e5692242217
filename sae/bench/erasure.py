"""Targeted erasure (SAEBench's TPP, adapted to frames): ablate the SAE features chosen for one
concept and measure how much each concept's probe loses.

For every concept i a class-balanced logistic probe is fit on the SAE reconstruction of the
training frames; its ``n_remove`` features with the largest standardised mean difference are
zeroed in the codes of the test frames, and every probe j is scored (balanced accuracy) on that
reconstruction. ``drop[i][j]`` is probe j's loss when i's features go; ``tpp`` = mean own drop -
mean drop of the other concepts (high: the features of a concept carry that concept and nothing
else). The fraction of features needed to erase a concept (:func:`sae.analyses.concept_erasure`,
speech vs non-speech and vowel vs consonant) is reported beside it.

Example
-------
>>> res = targeted_erasure(sae, X, {"speech": (y, None), "vowel": (v, speech_rows)}, train)   # doctest: +SKIP
>>> res["tpp"], res["drop"]["speech"]["speech"]                                             # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from sae.analyses import decode_without
from sae.bench.probing import rank_columns


def _fit(R, y, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, class_weight="balanced",
                                                              random_state=seed)).fit(R, y)


def _acc(probe, R, y) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y, probe.predict(R)))


@torch.no_grad()
def targeted_erasure(sae, X, concepts: dict, train, n_remove: int = 20, seed: int = 0) -> dict:
    """``concepts``: ``{name: (y [N] 0/1, rows or None)}`` (rows: the frames where the concept is
    defined, e.g. speech frames for vowel vs consonant; None = all). ``train``: boolean mask over
    the N frames. Returns ``{"tpp", "own_drop", "other_drop", "drop": {i: {j: ...}}, "baseline": {...},
    "features": {i: [...]}}``."""
    X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    train = np.asarray(train, dtype=bool)
    Z = torch.cat([sae.encode(X[a : a + 8192]) for a in range(0, len(X), 8192)])
    R = sae.decode(Z).numpy()
    Zn = Z.numpy()
    probes, chosen, base, spec = {}, {}, {}, {}
    for name, (y, rows) in concepts.items():
        rows = np.arange(len(X)) if rows is None else np.asarray(rows)
        y = np.asarray(y).astype(int)
        tr, te = rows[train[rows]], rows[~train[rows]]
        ytr, yte = y[tr], y[te]
        if len(set(ytr)) < 2 or len(set(yte)) < 2:
            continue
        probes[name] = _fit(R[tr], ytr, seed)
        chosen[name] = rank_columns(Zn[tr], ytr)[:n_remove]
        base[name] = _acc(probes[name], R[te], yte)
        spec[name] = (te, yte)
    drop: dict = {}
    test = np.flatnonzero(~train)  # every probe scores test frames only
    pos = np.full(len(X), -1)
    pos[test] = np.arange(len(test))
    for i in probes:
        Ri = decode_without(sae, Z, R, chosen[i], test)
        drop[i] = {j: base[j] - _acc(probes[j], Ri[pos[spec[j][0]]], spec[j][1]) for j in probes}
    names = list(drop)
    own = [drop[i][i] for i in names]
    other = [drop[i][j] for i in names for j in names if j != i]
    return {"tpp": float(np.mean(own) - (np.mean(other) if other else 0.0)) if names else float("nan"),
            "own_drop": float(np.mean(own)) if own else float("nan"),
            "other_drop": float(np.mean(other)) if other else float("nan"),
            "n_remove": n_remove, "baseline": base, "drop": drop,
            "features": {i: [int(f) for f in chosen[i]] for i in names}}


def frame_erasure_concepts(frames: pd.DataFrame, classes: dict) -> dict:
    """Concepts of a frame table for :func:`targeted_erasure`: speech vs non-speech (all frames, when
    several domains) and each phone class vs the other phones (phone-labelled frames)."""
    frames = frames.reset_index(drop=True)
    out = {}
    if "domain" in frames:
        dom = frames["domain"].fillna("unknown").astype(str).to_numpy()
        if len(set(dom)) > 1 and (dom == "speech").any():
            out["speech"] = ((dom == "speech").astype(int), None)
    if "phones" in frames:
        ph = frames["phones"].to_numpy(dtype=object)
        rows = np.flatnonzero([pd.notna(v) and v != "sil" for v in ph])
        for name, members in classes.items():
            y = np.array([v in members for v in ph], dtype=int)
            if 20 <= y[rows].sum() < len(rows) - 20:
                out[name] = (y, rows)
    return out


def erasure_fractions(sae, X, frames: pd.DataFrame, seed: int = 0, vowels=None) -> dict:
    """The existing fraction-to-erase analysis (:func:`sae.analyses.concept_erasure`, fixed probe)
    for speech vs non-speech and vowel vs consonant."""
    from sae.analyses import concept_erasure

    frames = frames.reset_index(drop=True)
    out = {}
    X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    if "domain" in frames:
        dom = frames["domain"].fillna("unknown").astype(str).to_numpy()
        sp = dom == "speech"
        if 50 <= sp.sum() <= len(sp) - 50:
            out["speech"] = concept_erasure(sae, X, sp.astype(int), seed=seed, probe="fixed")["fraction_needed"]
    if "phones" in frames and vowels:
        ph = frames["phones"].to_numpy(dtype=object)
        rows = np.flatnonzero([pd.notna(v) and v != "sil" for v in ph])
        y = np.array([ph[r] in vowels for r in rows], dtype=int)
        if len(rows) >= 50 and 0 < y.sum() < len(y):
            out["vowel"] = concept_erasure(sae, X[torch.from_numpy(rows)], y, seed=seed, probe="fixed")["fraction_needed"]
    return out
