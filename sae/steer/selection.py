"""Choose what to steer: SAE features that mark a concept, and the class-mean direction baseline.

A *concept* splits the frames of a labelled cache into two classes:

- ``nonspeech``: frames of clips whose domain is not ``speech`` vs frames of speech clips;
- ``domain=music``: frames of music clips vs all other frames;
- ``TIER=LABEL`` (e.g. ``phones=sil``): frames whose tier label is LABEL vs frames with another label.

Every feature is scored on the fit frames by effect size (Cohen's d of its code, concept minus rest,
with the two variances averaged) and AUROC. The significance bar is a max-statistic permutation
test: labels are permuted *by clip* (clip concepts) or circularly shifted within each clip (frame
concepts), so frames of one clip never count as independent evidence; the bar is the 95th
percentile over permutations of the largest effect size of any feature. Selected features have
an effect size above the bar and an AUROC of at least ``min_auroc``, best first.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> groups = np.repeat(np.arange(20), 50)                # 20 clips of 50 frames
>>> y = groups % 2 == 0                                  # even clips carry the concept
>>> Z = np.abs(rng.normal(size=(1000, 30))) * (rng.random((1000, 30)) < 0.3)
>>> Z[y, 7] += 2.0                                       # feature 7 marks it
>>> sel = select_features(Z, y, groups, n_permutations=100, seed=0)
>>> sel.selected[:1], bool(sel.bar < sel.scores.loc[7, "effect_size"])
([7], True)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from workbench.conventions import permutation_p


@dataclass
class Selection:
    """Scores of every feature (``scores``: DataFrame indexed by feature), the bar and the choice."""

    scores: pd.DataFrame
    bar: float
    selected: list[int]
    n_permutations: int
    level: str  # "clip" or "frame": how the null was drawn

    def records(self, n: int | None = None) -> list[dict]:
        """Selected features with their scores, for ``steering.json``."""
        out = []
        for i in self.selected[:n]:
            row = self.scores.loc[i]
            out.append({"index": int(i), "effect_size": round(float(row.effect_size), 5),
                        "auroc": round(float(row.auroc), 5), "mean_concept": round(float(row.mean_concept), 5),
                        "mean_rest": round(float(row.mean_rest), 5), "fire_rate_concept":
                        round(float(row.fire_concept), 5), "fire_rate_rest": round(float(row.fire_rest), 5)})
        return out


def concept_labels(frames: pd.DataFrame, concept: str, tier_labels=None) -> tuple[np.ndarray, np.ndarray, str]:
    """``(y, valid, level)`` for a frame table: ``y`` bool per frame, ``valid`` which frames take part.

    ``tier_labels(tier)`` returns a tier's labels per frame (``ActivationCache.labels``); needed
    only for ``TIER=LABEL`` concepts.
    """
    domain = frames["domain"].astype(str).to_numpy()
    valid = np.ones(len(frames), dtype=bool)
    if concept == "nonspeech":
        return domain != "speech", valid, "clip"
    if "=" not in concept:
        raise ValueError(f"unknown concept {concept!r}: use 'nonspeech', 'domain=NAME' or 'TIER=LABEL'")
    key, value = concept.split("=", 1)
    if key == "domain":
        if value not in set(domain):
            raise ValueError(f"concept {concept!r}: no frames of domain {value!r}; domains: {sorted(set(domain))}")
        return domain == value, valid, "clip"
    if tier_labels is None:
        raise ValueError(f"concept {concept!r} needs tier labels (a cache)")
    labels = np.asarray(tier_labels(key), dtype=object)
    valid = np.array([lab is not None for lab in labels])
    y = np.array([lab == value for lab in labels])
    if not y.any():
        raise ValueError(f"concept {concept!r}: no frame is labelled {value!r} in tier {key!r}")
    return y, valid, "frame"


def effect_sizes(X: np.ndarray, Y: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Cohen's d of every column of ``X [n, d]`` for each label column of ``Y [n, P]`` (0/1): ``[d, P]``.

    Two-pass in float64: each column is centred on its mean before the sums of squares are taken,
    so a large common offset (activations around 3,000) does not cancel away the variance (a
    one-pass float32 formula turned a true d of 0.21 into 0.11). Columns are processed ``chunk`` at
    a time to bound memory.
    """
    X = np.asarray(X)
    Y = np.asarray(Y, dtype=np.float64)
    n1 = Y.sum(0)
    n0 = len(Y) - n1
    out = np.empty((X.shape[1], Y.shape[1]))
    for a in range(0, X.shape[1], chunk):
        x = np.asarray(X[:, a : a + chunk], dtype=np.float64)
        x = x - x.mean(0)  # pass 1: centre; pass 2: class sums of the centred values
        s1, q1 = x.T @ Y, (x * x).T @ Y
        s, q = x.sum(0)[:, None], (x * x).sum(0)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            m1, m0 = s1 / n1, (s - s1) / n0
            v1 = np.maximum(q1 / n1 - m1**2, 0)
            v0 = np.maximum((q - q1) / n0 - m0**2, 0)
            sd = np.sqrt((v1 + v0) / 2)
            out[a : a + chunk] = np.where(sd > 1e-12 * (1 + np.abs(m1) + np.abs(m0)), (m1 - m0) / sd, 0.0)
    return out


def _null_labels(y: np.ndarray, groups: np.ndarray, level: str, rng: np.random.Generator) -> np.ndarray:
    """One draw of labels under the null that keeps the group structure.

    ``clip`` level: groups (:func:`group_ids`) are permuted as wholes: group ``g`` receives the label
    sequence of a random other group, stretched to ``g``'s length and circularly shifted, so a group
    whose frames are all one class gets one label (the classic group permutation) and a group that
    mixes classes keeps its mix instead of being collapsed to one label. ``frame`` level: a circular
    shift within each group.
    """
    _, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(inv.max() + 1)]
    out = np.empty_like(y)
    if level == "clip":
        for idx, src in zip(members, rng.permutation(len(members))):
            lab = y[members[src]]
            lab = lab[(np.arange(len(idx)) * len(lab)) // len(idx)]  # stretched to this group's length
            out[idx] = np.roll(lab, int(rng.integers(len(idx)))) if lab.min() != lab.max() else lab
        return out
    for idx in members:
        out[idx] = np.roll(y[idx], int(rng.integers(len(idx))))
    return out


def select_features(codes: np.ndarray, y: np.ndarray, groups: np.ndarray, level: str = "clip",
                    n_permutations: int = 200, alpha: float = 0.05, min_auroc: float = 0.6,
                    max_features: int | None = 256, seed: int = 0, batch: int = 50) -> Selection:
    """Score every feature (column of ``codes``) for concept ``y`` and select the significant ones."""
    codes = np.asarray(codes, dtype=np.float32)
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("the concept needs frames of both classes in the fit split")
    d = effect_sizes(codes, y[:, None])[:, 0]
    rng = np.random.default_rng(seed)
    maxima = []
    for start in range(0, n_permutations, batch):
        Y = np.stack([_null_labels(y, groups, level, rng) for _ in range(min(batch, n_permutations - start))], 1)
        maxima.append(effect_sizes(codes, Y).max(0))
    maxima = np.concatenate(maxima) if maxima else np.array([np.inf])
    bar = float(np.quantile(maxima, 1 - alpha))
    u = mannwhitneyu(codes[y], codes[~y], axis=0, method="asymptotic").statistic
    auroc = u / (y.sum() * (~y).sum())
    scores = pd.DataFrame({
        "effect_size": d, "auroc": auroc,
        "mean_concept": codes[y].mean(0), "mean_rest": codes[~y].mean(0),
        "fire_concept": (codes[y] > 0).mean(0), "fire_rest": (codes[~y] > 0).mean(0),
    })
    scores["p_perm"] = permutation_p(d, maxima[None, :], axis=1)  # the one rule: workbench.conventions
    scores.index.name = "feature"
    ok = scores[(scores.effect_size > bar) & (scores.auroc >= min_auroc)]
    chosen = ok.sort_values("effect_size", ascending=False, kind="stable").index.tolist()
    return Selection(scores, bar, [int(i) for i in chosen[:max_features]], n_permutations, level)


def class_mean_direction(acts: np.ndarray, y: np.ndarray) -> dict:
    """Difference of class means of raw activations (concept minus rest), with the projection of
    the midpoint on the unit direction (the frame gate's threshold) and its AUROC on these frames."""
    acts = np.asarray(acts, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    m1, m0 = acts[y].mean(0), acts[~y].mean(0)
    u = m1 - m0
    unit = u / max(np.linalg.norm(u), 1e-12)
    proj = acts @ unit
    auroc = mannwhitneyu(proj[y], proj[~y], method="asymptotic").statistic / (y.sum() * (~y).sum())
    return {"direction": u.astype(np.float32).tolist(), "midpoint": float((m1 + m0) / 2 @ unit),
            "norm": float(np.linalg.norm(u)), "auroc": float(auroc),
            "effect_size": float(effect_sizes(proj[:, None], y[:, None])[0, 0])}


def select_by_attribution(A: np.ndarray, y: np.ndarray, groups: np.ndarray, n_permutations: int = 200,
                          alpha: float = 0.05, max_features: int | None = 256, seed: int = 0) -> Selection:
    """Select features by per-clip attribution ``A [clips, d_sae]`` (:func:`sae.steer.attribution.attribution`).

    ``y``: concept per clip, ``groups``: group per clip. A feature is selected when its attribution
    separates the classes (Cohen's d over clips above the max-statistic bar of group permutations) and
    its mean attribution is larger on concept clips; the ranking is by that difference of means
    (``attribution``: the expected change of log p(end) on the concept's clips minus on the rest).
    """
    A = np.asarray(A, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("attribution needs fit clips of both classes")
    d = effect_sizes(A, y[:, None])[:, 0]
    rng = np.random.default_rng(seed)
    maxima = np.array([effect_sizes(A, _null_labels(y, groups, "clip", rng)[:, None])[:, 0].max()
                       for _ in range(n_permutations)]) if n_permutations else np.array([np.inf])
    bar = float(np.quantile(maxima, 1 - alpha))
    diff = A[y].mean(0) - A[~y].mean(0)
    scores = pd.DataFrame({"attribution": diff, "attribution_concept": A[y].mean(0),
                           "attribution_rest": A[~y].mean(0), "effect_size": d,
                           "p_perm": permutation_p(d, maxima[None, :], axis=1)})
    scores.index.name = "feature"
    ok = scores[(scores.effect_size > bar) & (scores.attribution > 0)]
    chosen = ok.sort_values("attribution", ascending=False, kind="stable").index.tolist()
    return Selection(scores, bar, [int(i) for i in chosen[:max_features]], n_permutations, "clip")
