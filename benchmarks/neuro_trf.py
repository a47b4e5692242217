"""Benchmark: a TRF layer sweep (6 whisper-tiny.en encoder feature sets) on 10 minutes of 64-channel
data at 100 Hz, 5-fold by trial, ridge path from one eigendecomposition per fold, against MNE's
``ReceptiveField`` looped over the same alphas on the same folds and inputs. Prints JSON.

Stimuli: the naplib sample's audio (ten ~62 s audiobook excerpts, `make neuro-data`), cut into
30-s trials (equal lengths, as MNE's 3-D input needs); without naplib, ``--synthetic`` smooth random
features of the same widths. Features: whisper-tiny.en hooks from an activation cache built once
under ``--cache-root`` (not timed), brought to 100 Hz and reduced per fold by PCA (16 components,
training trials only). Responses: 64 AR(1) noise channels, 5 of them driven by block 1 at 150 ms.

Both sides get identical inputs per fold; the work timed is, per feature set and fold, fitting every
alpha on the training trials and scoring r on the held-out trials. MNE's loop is timed on
``--mne-sets`` sets and ``--mne-folds`` folds (it is slow; scaled to 5 folds) and reported per set
beside ours on the same sets, in CPU seconds of the process and in wall seconds.

    .venv/bin/python benchmarks/neuro_trf.py --cache-root work/caches --mne-sets 1
    .venv/bin/python benchmarks/neuro_trf.py --sets 1 --mne-folds 1     # a quick look on a busy machine
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from scipy import signal

HOOKS = ["encoder.hook_conv_out"] + [f"encoder.blocks.{i}.hook_resid_post" for i in range(4)] + [
    "encoder.ln_post.hook_normalized"]
SFREQ = 100.0
TRIAL_S = 30.0


def whisper_trials(cache_root: str) -> tuple[dict[str, list[np.ndarray]], str]:
    """``{hook: [trial features at 100 Hz]}`` from the naplib audio, 30-s trials."""
    import tempfile

    from neuro.acoustic import to_rate
    from neuro.naplib_sample import export_naplib_sample
    from neuro.stimulus import _per_clip, open_or_build_cache
    from workbench.corpus import load_corpus

    corpus_dir, _ = export_naplib_sample(os.path.join(tempfile.gettempdir(), "neuro_bench_naplib"))
    corpus = load_corpus(corpus_dir)
    cache = open_or_build_cache("whisper-tiny.en", corpus, HOOKS, cache_root)
    ids = [c.id for c in corpus]
    out = {}
    for hook in HOOKS:
        per_clip = _per_clip(cache, hook, ids)
        trials = []
        for c in corpus:
            x = to_rate(per_clip[c.id], cache.frame_rate(hook), SFREQ, int(round(c.duration_s * SFREQ)))
            n = int(TRIAL_S * SFREQ)
            trials += [x[i * n : (i + 1) * n] for i in range(len(x) // n)]
        out[hook] = trials
    return out, "naplib sample audio, whisper-tiny.en"


def synthetic_trials(n_trials: int, seed: int = 0) -> tuple[dict[str, list[np.ndarray]], str]:
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng(seed)
    n = int(TRIAL_S * SFREQ)
    return ({h: [gaussian_filter1d(rng.normal(size=(n, 384)), 3, axis=0) for _ in range(n_trials)] for h in HOOKS},
            "synthetic smooth features (384-d)")


def responses(drive_feats: list[np.ndarray], n_ch: int = 64, seed: int = 0) -> list[np.ndarray]:
    from neuro.simulate import planted_driver

    rng = np.random.default_rng(seed)
    w = rng.normal(size=drive_feats[0].shape[1])
    out = []
    for x in drive_feats:
        z = (x - x.mean(0)) @ w
        d = planted_driver(z / z.std(), SFREQ, 0.15)
        e = signal.lfilter([1.0], [1.0, -0.9], rng.normal(size=(len(x), n_ch)), axis=0)
        e /= e.std(0)
        e[:, :5] += 0.1 / np.sqrt(0.99) * (d / d.std())[:, None]
        out.append(e)
    return out


def ours_path(xs, ys, fold_of, alphas, n_components):
    from neuro.trf import Block, fit_trf

    return fit_trf(xs, ys, SFREQ, tmin=-0.1, tmax=0.5, alphas=alphas, blocks=[Block(xs[0].shape[1], "pca", n_components)],
                   fold_of_trial=fold_of, refit=False, inner_cv=False)


def mne_path(xs, ys, fold_of, abs_alphas, n_components, n_folds_timed=None):
    """MNE ReceptiveField, one fit per (fold, alpha), on the same PCA inputs (the first
    ``n_folds_timed`` folds; the rest of ``r`` stays NaN)."""
    import mne
    from mne.decoding import ReceptiveField

    from neuro.trf import Block, FeatureTransform, _pearson

    mne.set_log_level("ERROR")
    n_folds = int(fold_of.max()) + 1
    r = np.full((n_folds, abs_alphas.shape[1], ys[0].shape[1]), np.nan)
    for k in range(n_folds if n_folds_timed is None else n_folds_timed):
        tr, te = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        tf = FeatureTransform.fit([xs[i] for i in tr], [Block(xs[0].shape[1], "pca", n_components)])
        Xtr = np.stack([tf(xs[i]) for i in tr], 1)
        Xte = np.stack([tf(xs[i]) for i in te], 1)
        Ytr, Yte = np.stack([ys[i] for i in tr], 1), np.stack([ys[i] for i in te], 1)
        y_te = Yte.transpose(1, 0, 2).reshape(-1, Yte.shape[-1])
        for a, alpha in enumerate(abs_alphas[k]):
            rf = ReceptiveField(-0.1, 0.5, SFREQ, estimator=float(alpha), fit_intercept=True).fit(Xtr, Ytr)
            pred = rf.predict(Xte).transpose(1, 0, 2).reshape(-1, Yte.shape[-1])
            r[k, a] = _pearson(pred, y_te)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-root", default="work/caches")
    ap.add_argument("--synthetic", action="store_true", help="random features instead of whisper on naplib audio")
    ap.add_argument("--mne-sets", type=int, default=1, help="feature sets MNE's loop is timed on")
    ap.add_argument("--n-components", type=int, default=16)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--sets", type=int, default=len(HOOKS), help="feature sets timed (first N of the 6)")
    ap.add_argument("--mne-folds", type=int, default=5, help="folds MNE's loop is timed on (scaled to 5)")
    ap.add_argument("--full", action="store_true", help="also time the full nested fit (inner CV + refit)")
    args = ap.parse_args()

    from neuro.trf import DEFAULT_ALPHAS, assign_folds

    feats, source = synthetic_trials(20) if args.synthetic else whisper_trials(args.cache_root)
    ys = responses(feats[HOOKS[2]], args.channels)
    fold_of = assign_folds(len(ys), 5, seed=0)
    minutes = sum(len(y) for y in ys) / SFREQ / 60
    hooks = HOOKS[: args.sets]
    # CPU seconds of this process (all its threads) as well as wall seconds: on a shared machine
    # the wall clock mostly measures the neighbours
    ours_s, ours_cpu, results = [], [], {}
    for hook in hooks:
        t, c = time.perf_counter(), time.process_time()
        results[hook] = ours_path(feats[hook], ys, fold_of, DEFAULT_ALPHAS, args.n_components)
        ours_s.append(time.perf_counter() - t)
        ours_cpu.append(time.process_time() - c)
    mne_s, mne_cpu, diffs = [], [], []
    scale = 5 / args.mne_folds
    for hook in hooks[: args.mne_sets]:
        t, c = time.perf_counter(), time.process_time()
        r_mne = mne_path(feats[hook], ys, fold_of, results[hook].alphas, args.n_components, args.mne_folds)
        mne_s.append((time.perf_counter() - t) * scale)
        mne_cpu.append((time.process_time() - c) * scale)
        diffs.append(float(np.nanmax(np.abs(r_mne - results[hook].r_path))))
    out = {
        "data": source, "minutes": round(minutes, 2), "trials": len(ys), "channels": args.channels,
        "sfreq": SFREQ, "feature_sets": len(HOOKS), "lags": 61, "n_components": args.n_components,
        "columns_per_set": 61 * args.n_components, "folds": 5, "alphas": len(DEFAULT_ALPHAS),
        "sets_timed": len(hooks), "ours_wall_s_per_set": [round(s, 2) for s in ours_s],
        "ours_cpu_s_per_set": [round(s, 2) for s in ours_cpu],
        "ours_cpu_s_6_sets": round(np.mean(ours_cpu) * len(HOOKS), 1),
        "mne_sets_timed": len(mne_s), "mne_folds_timed": args.mne_folds,
        "mne_wall_s_per_set_5_folds": [round(s, 2) for s in mne_s],
        "mne_cpu_s_per_set_5_folds": [round(s, 2) for s in mne_cpu],
        "speedup_cpu_same_sets": round(sum(mne_cpu) / sum(ours_cpu[: len(mne_cpu)]), 1) if mne_cpu else None,
        "speedup_wall_same_sets": round(sum(mne_s) / sum(ours_s[: len(mne_s)]), 1) if mne_s else None,
        "max_abs_r_difference": max(diffs) if diffs else None,
        "best_set_by_mean_r": max(hooks, key=lambda h: results[h].r_path.max(1).mean()),
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
    }
    if args.full:
        from neuro.trf import Block, fit_trf

        t = time.perf_counter()
        for hook in hooks:
            fit_trf(feats[hook], ys, SFREQ, blocks=[Block(384, "pca", args.n_components)], fold_of_trial=fold_of)
        out["ours_full_nested_fit_seconds"] = round(time.perf_counter() - t, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
