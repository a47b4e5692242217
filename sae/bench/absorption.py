"""Feature absorption (SAEBench's definition, adapted to frames).

For a concept (e.g. the phone class "fricative"): a logistic-regression probe on the raw
activations gives the concept's direction ``p``; the *main* features are the fewest (at most
``max_main``) SAE features whose "any of them fires" rule reads the concept best on the training
frames (each added one must raise that rule's F1 by ``min_gain``). On held-out frames where the
concept holds and the probe finds it, a frame is *absorbed* when no main feature fires but another
active feature, whose decoder direction has cosine >= ``min_cos`` with ``p``, carries at least
``min_share`` of the code's projection on ``p``: the concept is there, read by a more specific
feature instead of the general one. The absorption rate is the share of those frames that are
absorbed; a concept the probe cannot read (balanced accuracy < ``min_probe``) is skipped.

Example
-------
>>> absorption(sae, X, is_fricative, train)["absorption_rate"]                   # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

#: ARPAbet broad phone classes
PHONE_CLASSES = {
    "vowel": {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"},
    "fricative": {"F", "V", "TH", "DH", "S", "Z", "SH", "ZH", "HH"},
    "stop": {"P", "B", "T", "D", "K", "G", "DX"},
    "nasal": {"M", "N", "NG"},
    "approximant": {"L", "R", "W", "Y"},
}


def _any_fires_f1(fires: np.ndarray, y: np.ndarray) -> float:
    tp = float((fires & (y == 1)).sum())
    return 2 * tp / max(float(fires.sum() + (y == 1).sum()), 1.0)


@torch.no_grad()
def absorption(sae, X, y, train, max_main: int = 3, min_gain: float = 0.03, min_cos: float = 0.1,
               min_share: float = 0.4, min_probe: float = 0.7, seed: int = 0) -> dict:
    """Absorption of the binary concept ``y`` over frames ``X`` (module docstring); ``train``: boolean
    mask of the frames used to fit the probe and pick the main features (the others are scored)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    y = np.asarray(y).astype(int)
    train = np.asarray(train, dtype=bool)
    test = ~train
    if len(set(y[train])) < 2 or len(set(y[test])) < 2:
        return {"skipped": "a class is missing from the train or test frames"}
    Xn = X.numpy()
    mu = Xn[train].mean(0)
    probe = LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed).fit(Xn[train] - mu, y[train])
    pred = probe.predict(Xn - mu)
    probe_acc = float(balanced_accuracy_score(y[test], pred[test]))
    out = {"probe_accuracy": probe_acc, "frames_test_positive": int((y[test] == 1).sum())}
    if probe_acc < min_probe:
        return {**out, "skipped": f"probe balanced accuracy {probe_acc:.2f} < {min_probe}", "absorption_rate": 0.0}
    p = torch.from_numpy(probe.coef_[0].astype(np.float32))
    p = p / p.norm()
    Z = torch.cat([sae.encode(X[a : a + 8192]) for a in range(0, len(X), 8192)])
    fires = (Z > 0).numpy()
    # candidates: features firing more often on the concept than off it (training frames)
    f_tr, y_tr = fires[train], y[train]
    rate1, rate0 = f_tr[y_tr == 1].mean(0), f_tr[y_tr == 0].mean(0)
    cand = np.argsort(-(rate1 - rate0), kind="stable")[: 50]
    main: list[int] = []
    best = 0.0
    for _ in range(max_main):
        scores = [(_any_fires_f1(f_tr[:, main + [c]].any(1), y_tr), c) for c in cand if c not in main]
        f1, c = max(scores) if scores else (0.0, -1)
        if c < 0 or f1 < best + min_gain:
            break
        main.append(int(c))
        best = f1
    out.update(main_features=main, main_f1_train=best)
    dirs = torch.nn.functional.normalize(sae.W_dec.float(), dim=1)
    cos = (dirs @ p).numpy()
    proj = (Z * torch.from_numpy(cos * sae.W_dec.float().norm(dim=1).numpy())).numpy()   # z_j * (d_j . p)
    rows = np.flatnonzero(test & (y == 1) & (pred == 1))
    absorbed, absorbers = 0, {}
    for r in rows:
        if main and fires[r, main].any():
            continue
        active = np.flatnonzero(fires[r])
        total = proj[r, active].sum()
        if total <= 0:
            continue
        ok = active[(cos[active] >= min_cos) & (proj[r, active] >= min_share * total)]
        ok = ok[~np.isin(ok, main)]
        if len(ok):
            absorbed += 1
            j = int(ok[np.argmax(proj[r, ok])])
            absorbers[j] = absorbers.get(j, 0) + 1
    n = len(rows)
    top = sorted(absorbers.items(), key=lambda kv: -kv[1])[:5]
    return {**out, "frames_scored": int(n), "absorbed": int(absorbed),
            "absorption_rate": absorbed / n if n else 0.0, "main_miss_rate": float(
                np.mean([not (main and fires[r, main].any()) for r in rows])) if n else 0.0,
            "absorbing_features": [{"feature": j, "frames": c} for j, c in top]}


def phone_class_absorption(sae, X, frames: pd.DataFrame, seed: int = 0, classes=PHONE_CLASSES,
                           max_frames: int = 8000, **kw) -> dict:
    """:func:`absorption` for each broad phone class on the phone-labelled frames (not silence),
    train/test split by speaker (:func:`workbench.conventions.frame_groups`)."""
    if "phones" not in frames:
        return {}
    frames = frames.reset_index(drop=True)
    ph = frames["phones"].to_numpy(dtype=object)
    rows = np.flatnonzero([pd.notna(v) and v != "sil" for v in ph])
    rng = np.random.default_rng(seed)
    if len(rows) > max_frames:
        rows = np.sort(rng.choice(rows, max_frames, replace=False))
    if not len(rows):
        return {}
    from workbench.conventions import frame_groups

    groups = frame_groups(frames, by="speaker")[rows]
    names = np.unique(groups)
    if len(names) < 2:
        return {}
    test_groups = set(rng.permutation(names)[: max(1, round(0.3 * len(names)))])
    train = np.array([g not in test_groups for g in groups])
    X = np.asarray(X)[rows]
    out = {}
    for name, members in classes.items():
        y = np.array([v in members for v in ph[rows]], dtype=int)
        if y.sum() < 20:
            continue
        out[name] = absorption(sae, X, y, train, seed=seed, **kw)
    rates = [r["absorption_rate"] for r in out.values() if "skipped" not in r]
    return {"mean_absorption_rate": float(np.mean(rates)) if rates else float("nan"), "classes": out}
