"""What ``fit`` edits, per method: SAE features (contrast or attribution + patching), the optimised
vector, and the detector gate. Each returns the fields of a :class:`~workbench.steering.Steering`.

Example
-------
>>> feature_targets(np.array([[0.0, 2.0], [1.0, 4.0], [0.0, 0.0]]), np.array([True, True, False])).tolist()
[1.0, 3.0]
"""
from __future__ import annotations

import logging

import numpy as np

from sae.steer.data import clip_group

log = logging.getLogger(__name__)
#: strength at which each attribution candidate is patched alone (per edit)
PATCH_STRENGTH = {"scale": 4.0, "clamp_target": 1.0}


def feature_targets(codes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Typical value of each feature on the concept's frames: its mean where it fires (0 if never)."""
    c = np.asarray(codes)[np.asarray(y, dtype=bool)]
    fires = c > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(fires.any(0), (c * fires).sum(0) / fires.sum(0), 0.0)
    return t.astype(np.float64)


def fit_clips(cache, concept: str, max_clips: int | None, sample_rate: int, seed: int, verbose: bool):
    """``(audio, y, groups, ids)`` of (a seeded, class-balanced subset of) the cache's clips up to 30 s."""
    from sae.steer.data import is_speech
    from sae.steer.evaluate import load_clips
    from workbench.corpus import Corpus

    if concept != "nonspeech" and not concept.startswith("domain="):
        raise ValueError(f"attribution and the optimised vector need a clip concept (nonspeech, domain=NAME), not {concept!r}")
    clips = [c for c in cache.corpus if (c.duration_s or 0) <= 30.0]
    label = (lambda c: not is_speech(c)) if concept == "nonspeech" else (lambda c: c.domain == concept.split("=", 1)[1])
    if max_clips and len(clips) > max_clips:
        rng = np.random.default_rng(seed)
        pos, neg = [c for c in clips if label(c)], [c for c in clips if not label(c)]
        k = min(len(pos), max_clips // 2)
        pick = [pos[i] for i in rng.permutation(len(pos))[:k]] + \
               [neg[i] for i in rng.permutation(len(neg))[: max_clips - k]]
        clips = [c for c in clips if c in pick]
    clips, audio, _ = load_clips(Corpus(clips, root=cache.corpus.root), sample_rate, verbose)
    return audio, np.array([label(c) for c in clips]), np.array([clip_group(c) for c in clips]), [c.id for c in clips]


def attribution_features(model, fd, hook, cache, concept, codes, y_frames, edit, n_candidates, max_clips,
                         n_permutations, seed, verbose, probe=None) -> tuple[list[dict], dict, object]:
    """Features chosen by attribution patching and confirmed by patching (see :mod:`sae.steer.attribution`).

    Returns ``(feature records, selection info, scores table)``; records are ranked by the patched
    effect (mean change of log p(end) on concept clips minus on the rest), candidates whose patched
    effect is not positive are dropped."""
    from sae.steer.attribution import attribution, patch_effects
    from sae.steer.selection import select_by_attribution
    from workbench.steering import Steering

    targets = feature_targets(codes, y_frames)
    change = "clamp_target" if edit == "clamp_target" else "scale"
    audio, y, groups, ids = fit_clips(cache, concept, max_clips, model.sample_rate, seed, verbose)
    A = attribution(model, fd, hook, audio, change=change, target=targets, verbose=verbose)
    sel = select_by_attribution(A, y, groups, n_permutations=n_permutations, seed=seed)
    cand = sel.selected[:n_candidates]
    scores = sel.scores.assign(target=targets)
    records = []
    if cand:
        probe = probe or Steering(model=model.spec, hook=hook, d_model=fd.d_in, method="sae", edit=change,
                                  strength=1.0, sae=fd.path,
                                  features=[{"index": int(f), "target": float(targets[f])} for f in cand])
        probe._fd = fd
        P = patch_effects(model, probe, audio, cand, PATCH_STRENGTH[change], verbose=verbose)
        patched = P[y].mean(0) - P[~y].mean(0)
        scores.loc[cand, "patched"] = patched
        order = np.argsort(-patched, kind="stable")
        for j in order:
            if patched[j] <= 0:
                continue
            f = int(cand[j])
            row = sel.scores.loc[f]
            records.append({"index": f, "attribution": round(float(row.attribution), 6),
                            "attribution_d": round(float(row.effect_size), 5), "patched": round(float(patched[j]), 6),
                            "target": round(float(targets[f]), 6)})
    info = {"criterion": "attribution patching: per-clip dlog p(end)/dz x dz separates the classes (d above the "
            "group-permutation max-statistic bar), ranked by the effect of actually patching each candidate",
            "change": change, "significance_bar": sel.bar, "n_permutations": n_permutations,
            "n_selected": len(sel.selected), "n_candidates": len(cand), "n_confirmed": len(records),
            "attribution_clips": ids, "patch_strength": PATCH_STRENGTH[change]}
    return records, info, scores


def optimised_vector(model, hook, cache, concept, max_clips, seed, verbose, **kw) -> tuple[list[float], dict]:
    from sae.steer.vector import optimise_vector

    audio, y, _, ids = fit_clips(cache, concept, max_clips, model.sample_rate, seed, verbose)
    res = optimise_vector(model, hook, audio, y, seed=seed, verbose=verbose, **kw)
    info = {k: v for k, v in res.items() if k not in ("vector", "layers", "loss", "end_logprob", "kl")}
    info.update(final_loss=res["loss"][-1], final_end_logprob=res["end_logprob"][-1], final_kl=res["kl"][-1],
                clips=ids, layers=res["layers"])  # fit() moves ``layers`` into the artifact
    return res["vector"], info
