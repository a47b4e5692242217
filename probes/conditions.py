"""Where does noisy speech converge to clean speech inside a model? Layerwise similarity and probe
robustness across the conditions of a ``workbench corpus mix`` corpus.

- :func:`linear_cka`: linear centred kernel alignment of two ``[n, d]`` activation sets on the same
  frames (Kornblith et al. 2019): 1 for a representation with itself (or any rotation / scaling of
  it), near 0 for unrelated frames.
- :func:`similarity_by_layer`: per hook, CKA between each clip's clean activations and those of its
  noisy (or enhanced) versions, frames paired by time (the versions have the clean clip's length).
- :func:`robustness_by_layer`: per hook, a linear probe (phones by default) trained on clean clips of
  some utterances and tested on every condition of *other* utterances (groups by the clean clip,
  so no utterance is on both sides): how far each layer's code for the target survives the noise.

Both read activations with :meth:`AudioModel.run_with_cache`, once per clip and condition.

Example
-------
>>> import numpy as np
>>> X = np.random.default_rng(0).standard_normal((500, 20))
>>> round(linear_cka(X, X @ np.linalg.qr(np.random.default_rng(1).standard_normal((20, 20)))[0]), 6)
1.0
>>> linear_cka(X, X[np.random.default_rng(2).permutation(500)]) < 0.1
True
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from workbench.corpus.types import Clip, Corpus

logger = logging.getLogger(__name__)

__all__ = ["linear_cka", "activations_by_condition", "similarity_by_layer", "robustness_by_layer"]


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA of two ``[n, d]`` arrays whose rows are the same frames (float64, centred)."""
    if len(X) != len(Y):
        raise ValueError(f"CKA needs paired frames: {len(X)} vs {len(Y)} rows")
    X = np.asarray(X, np.float64) - np.mean(X, axis=0)
    Y = np.asarray(Y, np.float64) - np.mean(Y, axis=0)
    cross = np.linalg.norm(Y.T @ X) ** 2
    norm = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    return float(cross / norm) if norm > 0 else 0.0


def activations_by_condition(model, corpus: Corpus, hooks: Sequence[str], audio_of: Callable[[Clip], np.ndarray],
                             verbose: bool = True) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{condition: {clean_id: {hook: [T, D]}}}`` for every clip of ``corpus`` (from ``corpus mix``:
    each row has ``condition`` and ``clean_id``); ``audio_of(clip)`` loads a clip at the model's rate."""
    from tqdm.auto import tqdm

    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for clip in tqdm(list(corpus), desc="activations", unit="clip", disable=not verbose):
        cond, cid = clip.extra.get("condition"), clip.extra.get("clean_id")
        if cond is None or cid is None:
            raise ValueError(f"clip {clip.id!r} has no 'condition'/'clean_id': build the corpus with workbench corpus mix")
        acts = model.run_with_cache(audio_of(clip), list(hooks))
        out.setdefault(cond, {})[cid] = {h: a.float().numpy() for h, a in acts.items()}
    if "clean" not in out:
        raise ValueError("the corpus has no 'clean' condition (corpus mix --no-clean leaves it out)")
    return out


def similarity_by_layer(acts: dict[str, dict[str, dict[str, np.ndarray]]], hooks: Sequence[str]) -> pd.DataFrame:
    """One row per (hook, condition): CKA between clean and condition frames pooled over clips, on all
    frames (``cka``) and without the massive frames (``cka_no_massive``: a frame whose norm exceeds
    :func:`workbench.conventions.norm_limit` of the clean frames' median, in either version; linear CKA
    is dominated by a few such frames in Whisper's late blocks), with their share (``massive_share``)."""
    from workbench.conventions import massive_mask, norm_limit

    rows = []
    for cond, per_clip in acts.items():
        if cond == "clean":
            continue
        ids = [c for c in per_clip if c in acts["clean"]]
        for h in hooks:
            pairs = [(acts["clean"][c][h], per_clip[c][h]) for c in ids]
            n = [min(len(a), len(b)) for a, b in pairs]
            X = np.concatenate([a[:k] for (a, _), k in zip(pairs, n)])
            Y = np.concatenate([b[:k] for (_, b), k in zip(pairs, n)])
            limit = norm_limit(float(np.median(np.linalg.norm(X, axis=1))))
            massive = np.asarray(massive_mask(X, limit)) | np.asarray(massive_mask(Y, limit))
            rows.append({"hook": h, "condition": cond, "cka": linear_cka(X, Y),
                         "cka_no_massive": linear_cka(X[~massive], Y[~massive]),
                         "massive_share": float(massive.mean()), "frames": len(X), "clips": len(ids)})
    return pd.DataFrame(rows)


def robustness_by_layer(acts: dict[str, dict[str, dict[str, np.ndarray]]], labels: dict[str, np.ndarray],
                        hooks: Sequence[str], test_fraction: float = 0.3, seed: int = 0,
                        min_count: int = 5) -> pd.DataFrame:
    """Train on clean frames of some utterances, test on every condition of the others.

    ``labels[clean_id]`` holds one label per clean frame (None = not scored); a condition's frames take
    the label of the clean frame at the same time. Classes with fewer than ``min_count`` training
    frames are dropped. Returns hook, condition, accuracy, majority (the test set's majority-class
    rate), frames.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ids = sorted(c for c in acts["clean"] if c in labels)
    rng = np.random.default_rng(seed)
    test = set(rng.choice(ids, size=max(1, int(round(test_fraction * len(ids)))), replace=False))
    train = [c for c in ids if c not in test]
    if not train:
        raise ValueError("too few utterances to hold some out: need at least 2 clean clips with labels")
    rows = []
    for h in hooks:
        X, y = _stack({c: acts["clean"][c][h] for c in train}, labels)
        keep_classes = {k for k, n in zip(*np.unique(y, return_counts=True)) if n >= min_count}
        mask = np.isin(y, list(keep_classes))
        if len(keep_classes) < 2:
            raise ValueError(f"fewer than two classes with {min_count} training frames at {h}")
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.1))
        clf.fit(X[mask], y[mask])
        for cond, per_clip in acts.items():
            Xt, yt = _stack({c: per_clip[c][h] for c in test if c in per_clip}, labels)
            m = np.isin(yt, list(keep_classes))
            if not m.any():
                continue
            _, counts = np.unique(yt[m], return_counts=True)
            rows.append({"hook": h, "condition": cond, "accuracy": float(np.mean(clf.predict(Xt[m]) == yt[m])),
                         "majority": float(counts.max() / m.sum()), "frames": int(m.sum())})
    return pd.DataFrame(rows)


def _stack(per_clip: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for cid, a in per_clip.items():
        lab = np.asarray(labels[cid], dtype=object)
        n = min(len(a), len(lab))
        ok = np.array([v is not None for v in lab[:n]])
        xs.append(a[:n][ok])
        ys.append(lab[:n][ok].astype(str))
    return np.concatenate(xs), np.concatenate(ys)
