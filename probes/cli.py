"""``workbench probe``: layerwise linear probes on an activation cache.

Example
-------
$ workbench probe --cache work/cache --target phones --split speaker --folds 5 --out work/probes/phones
$ workbench probe --cache work/cache --target phones --sae work/saes --topk 1,4,16,64 --out work/probes/sae
"""
from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "probe",
        help="layerwise linear probes (phones, words, speaker, domain, ...) on a cache",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--cache", required=True, help="activation cache directory (workbench cache build)")
    p.add_argument("--target", required=True,
                   help="phones | words | words:N | speaker | domain | any frame-table column")
    p.add_argument("--hooks", nargs="+", default=["all"], help="hook names or globs; 'all' for every cached hook")
    p.add_argument("--sae", default=None, help="probe SAE codes from this SAE directory (SAELens layout)")
    p.add_argument("--topk", default=None,
                   help="with --sae: also probe on the k most discriminative SAE features, e.g. 1,4,16,64")
    p.add_argument("--split", default="speaker", help="grouped folds by 'speaker' or 'clip' (or a column)")
    p.add_argument("--folds", type=int, default=5, help="number of grouped folds (capped at the number of groups)")
    p.add_argument("--pooling", default="frame", choices=["frame", "segment", "clip"],
                   help="one sample per frame, per labelled segment (mean of its frames), or per clip")
    p.add_argument("--max-frames", type=int, default=None, help="cap on samples (seeded random subset)")
    p.add_argument("--control-types", default="context",
                   help="control-task types: 'context' (label with its neighbours / clip), 'label', or a column")
    p.add_argument("--C", type=float, default=None,
                   help="fixed inverse L2 strength; default: chosen per fold by grouped inner validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (CSV, JSON, HTML)")
    p.add_argument("--no-resume", action="store_true", help="recompute hooks already finished in --out")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from pathlib import Path

    from workbench.cache import ActivationCache

    from probes.estimator import LinearProbe
    from probes.report import write_report
    from probes.sweep import sweep

    cache = ActivationCache.open(args.cache)
    hooks = "all" if args.hooks == ["all"] else args.hooks
    ckpt = None if args.no_resume else Path(args.out) / "checkpoints"
    result = sweep(
        cache, args.target, hooks=hooks, features=args.sae or "raw", split=args.split, folds=args.folds,
        pooling=args.pooling, max_frames=args.max_frames, seed=args.seed, control_types=args.control_types,
        checkpoint_dir=ckpt, probe=LinearProbe(C=args.C, random_state=args.seed), verbose=True,
    )
    topk = None
    if args.topk:
        if not args.sae:
            raise ValueError("--topk needs --sae (it ranks SAE features)")
        from probes.sae_features import topk_sweep

        ks = [int(k) for k in args.topk.split(",") if k.strip()]
        topk = topk_sweep(cache, args.target, args.sae, ks=ks, hooks=hooks, split=args.split, folds=args.folds,
                          pooling=args.pooling, max_frames=args.max_frames, seed=args.seed,
                          probe=LinearProbe(C=args.C, random_state=args.seed))
    paths = write_report(result, args.out, topk=topk)
    cols = ["hook", "accuracy", "accuracy_std", "majority", "control_accuracy", "selectivity"]
    print(result.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"best layer: {result.best_hook}; wrote {', '.join(str(p) for p in paths.values())}")
    return 0
