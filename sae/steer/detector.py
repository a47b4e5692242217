"""Detect-then-steer: a linear detector of the concept that gates an edit (``gate: detector``).

A logistic regression (scikit-learn, balanced classes) on the fit frames' activations at the hook
(``space: acts``, the "per-layer linear detector" of detect-then-steer) or on the codes of the
steering's own SAE features (``space: sae``: the feature-based gate). At ``level: clip`` the edit acts
on a whole window when the detector's mean logit over the clip's real frames is positive; at
``level: frame`` on the frames whose logit is positive (:meth:`workbench.steering.Steering._detect`).

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 8)); y = np.arange(400) < 200; X[y, 2] += 3
>>> det = fit_detector(X, y, level="clip")
>>> det["level"], det["frame_accuracy"] > 0.9
('clip', True)
"""
from __future__ import annotations

import numpy as np


def fit_detector(X: np.ndarray, y: np.ndarray, level: str = "clip", space: str = "acts",
                 features: list[int] | None = None, C: float = 1.0, max_frames: int = 40_000, seed: int = 0) -> dict:
    """``detector`` entry of ``steering.json`` (weights in the space of ``X``'s columns)."""
    from sklearn.linear_model import LogisticRegression

    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=bool)
    if len(X) > max_frames:
        keep = np.random.default_rng(seed).choice(len(X), max_frames, replace=False)
        X, y = X[keep], y[keep]
    mu, sd = X.mean(0), X.std(0) + 1e-6
    clf = LogisticRegression(C=C, class_weight="balanced", max_iter=500).fit((X - mu) / sd, y)
    w = clf.coef_[0] / sd  # back to raw units: logit = x.w + b
    b = float(clf.intercept_[0] - (mu * clf.coef_[0] / sd).sum())
    acc = float(((X @ w + b > 0) == y).mean())
    out = {"weight": [float(v) for v in w], "bias": b, "level": level, "space": space, "frame_accuracy": acc,
           "model": f"logistic regression (scikit-learn), balanced classes, C={C:g}"}
    if features is not None:
        out["features"] = [int(f) for f in features]
    return out
