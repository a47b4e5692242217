"""Baselines and controls that say what a probe accuracy is worth.

- :func:`majority_baseline`: accuracy of always answering the most frequent training class.
- :func:`shuffled_labels`: the labels permuted (all of them, before splitting); a probe fitted
  on the permuted training labels and scored on the permuted test labels is a null model whose
  accuracy must stay under :func:`chance_upper_bound`.
- :func:`control_task`: Hewitt & Liang (2019) control task. Each *type* (an input identity
  that recurs across the data: a phone in its context, a word, a clip) gets a random class
  drawn from the empirical class distribution of the real labels. A probe can only solve it
  by memorising types, so ``selectivity = accuracy - control accuracy`` is high when the
  representation makes the real target, not type identity, linearly available.

Example
-------
>>> import numpy as np
>>> y = np.array(["a", "a", "b", "c", "a", "b"])
>>> types = np.array(["x", "x", "y", "z", "w", "y"])
>>> c = control_task(types, y, seed=0)
>>> bool(c[0] == c[1] and c[2] == c[5])        # one control class per type
True
"""
from __future__ import annotations

import numpy as np
from scipy.stats import binom


def majority_baseline(y_train, y_test) -> float:
    """Accuracy on ``y_test`` of predicting the most frequent class of ``y_train``."""
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if len(y_train) == 0 or len(y_test) == 0:
        raise ValueError("majority_baseline needs non-empty train and test labels")
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_test == values[np.argmax(counts)]))


def chance_upper_bound(y_test, alpha: float = 1e-3) -> float:
    """Upper ``1 - alpha`` binomial bound on the accuracy of a predictor independent of the labels.

    Any label-independent predictor has expected accuracy ``sum_c r_c q_c <= max_c q_c``
    (``q``: test class shares), so a binomial(n, max q) quantile bounds it. Frames of one
    segment are correlated, so on real frames treat this as optimistic.
    """
    y_test = np.asarray(y_test)
    n = len(y_test)
    q = np.unique(y_test, return_counts=True)[1].max() / n
    return float(binom.ppf(1.0 - alpha, n, q) / n)


def shuffled_labels(y, seed: int = 0) -> np.ndarray:
    """A random permutation of ``y`` (same class counts, no relation to the inputs)."""
    return np.random.default_rng(seed).permutation(np.asarray(y))


def control_task(types, y, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang control labels: each unique type gets one class sampled from ``y``'s distribution.

    Classes are drawn with the empirical frequencies of ``y`` (per token), so the control
    task has about the same class balance as the real one but carries no information
    beyond the type identity.
    """
    types, y = np.asarray(types), np.asarray(y)
    if types.shape != y.shape:
        raise ValueError(f"types {types.shape} and labels {y.shape} must have the same shape")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    uniq, inverse = np.unique(types, return_inverse=True)
    per_type = rng.choice(len(classes), size=len(uniq), p=counts / counts.sum())
    return classes[per_type[inverse]]


def selectivity(accuracy: float, control_accuracy: float) -> float:
    """Hewitt & Liang selectivity: real-task accuracy minus control-task accuracy."""
    return float(accuracy - control_accuracy)
