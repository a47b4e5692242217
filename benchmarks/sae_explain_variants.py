"""Why do few SAE features get an explanation with held-out F1 >= 0.5? The bench's explanation
scores under variants of the question, on the frames ``workbench sae bench`` uses.

``sae bench`` asks a rule to predict every frame on which a feature fires (any activation > 0). This
script repeats the bench's explanation step (same held-out frames, labels, descriptors and fit/test
clip split; :mod:`sae.bench.explain`) and also scores rules for the feature's *stronger* firings:
a frame counts as firing when the activation exceeds the ``q`` quantile of the feature's non-zero
activations on the fit clips (``q = 0.5, 0.75``). It prints one JSON line per variant: the share of
live features explained at held-out F1 >= 0.3 / 0.5 / 0.7, the median F1, and the in-sample
(fit-clip) F1 median, which bounds what the rule vocabulary can say about the features at all.

Usage::

    PYTHONPATH=$PWD .venv/bin/python benchmarks/sae_explain_variants.py --sae work/se/big_8M_s0 \
        --cache work/se/cache_big [--max-frames 20000]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def frames_and_codes(sae_path: str, cache_dir: str, max_frames: int = 20_000, seed: int = 0):
    """``(Z [N, d_sae], frames, descriptors)`` of the held-out frames ``sae bench`` scores (massive
    frames left out as the bench does)."""
    from sae.bench.run import _selection
    from sae.bench.saes import find_saes, load_bench_sae
    from sae.massive import recorded_filter, split_massive
    from workbench.acoustics import corpus_descriptors
    from workbench.cache import ActivationCache

    cache = ActivationCache.open(cache_dir)
    name, path = find_saes([sae_path])[0]
    sae = load_bench_sae(path, name)
    hook = sae.cfg.hook_name
    _, rows = _selection(cache, path, hook, None, max_frames, seed)
    X = torch.from_numpy(cache.load(hook, rows))
    frames = cache.frames(hook).iloc[rows].reset_index(drop=True)
    desc = corpus_descriptors(frames, cache.corpus, progress=False)
    trained = recorded_filter(path if path.is_dir() else path.parent, hook)
    if trained:
        limit = trained.get("norm_limit") or split_massive(X, None, trained.get("max_norm_ratio", 10.0))[1]
        keep = ~split_massive(X, limit)[0]
        X, frames, desc = X[torch.from_numpy(keep)], frames[keep].reset_index(drop=True), desc[keep].reset_index(drop=True)
    return sae.encode_numpy(X.numpy()), frames, desc


def variants(Z: np.ndarray, frames, desc, seed: int = 0, quantiles=(0.5, 0.75)) -> list[dict]:
    """Explanation summaries (:func:`sae.bench.explain.f1_distribution`) for "fires" and for "fires
    above the q quantile of its fit-clip activations", each with the fit-clip F1 median."""
    from sae.bench import explain, labels
    from workbench.conventions import frame_groups

    concepts = labels.frame_concepts(frames, desc)
    fit = explain.split_by_group(frame_groups(frames, by="clip"), 0.5, seed)
    out = []
    nz = np.where(Z[fit] > 0, Z[fit], np.nan)
    for q in (None, *quantiles):
        if q is None:
            fires = Z > 0
        else:
            with np.errstate(all="ignore"):
                thr = np.nan_to_num(np.nanquantile(nz, q, axis=0), nan=np.inf)
            fires = Z > thr[None, :]
        table = explain.explain_features(fires, concepts, fit)
        dist = explain.f1_distribution(table)
        live = table[table["fires_test"] > 0]
        out.append({"fires": "any activation" if q is None else f"activation above its fit-clip q{int(q * 100)}",
                    "live": dist["live_features"], "explained_frac": dist["explained_frac"],
                    "f1_median": dist.get("f1_q50"), "frac_f1_ge_0.3": dist.get("frac_f1_ge_0.3"),
                    "frac_f1_ge_0.5": dist.get("frac_f1_ge_0.5"), "frac_f1_ge_0.7": dist.get("frac_f1_ge_0.7"),
                    "fit_f1_median": float(live["fit_f1"].median()) if len(live) else float("nan"),
                    "by_tier": dist.get("by_tier")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sae", required=True, help="SAE directory or training --out folder (one hook)")
    ap.add_argument("--cache", required=True, help="activation cache holding the SAE's held-out clips")
    ap.add_argument("--max-frames", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    Z, frames, desc = frames_and_codes(args.sae, args.cache, args.max_frames, args.seed)
    for row in variants(Z, frames, desc, args.seed):
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))


if __name__ == "__main__":
    main()
