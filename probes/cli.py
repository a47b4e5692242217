"""``workbench probe``: layerwise linear probes on an activation cache.

Example
-------
$ workbench probe --cache work/cache --target phones --split speaker --folds 5 --out work/probes/phones
$ workbench probe --cache work/cache --target phones --sae work/saes --topk 1,4,16,64 --out work/probes/sae
"""
from __future__ import annotations

import argparse
import logging

from workbench.validate import check_out_dir, int_list, positive_float, positive_int

logger = logging.getLogger(__name__)


def target_spec(text: str) -> str:
    """argparse type for ``--target``: a name, or ``words:N`` with N a positive integer."""
    name, sep, arg = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"must be phones, words, words:N, speaker, domain or a column, got {text!r}")
    if sep:
        if name != "words":
            raise argparse.ArgumentTypeError(f"only 'words' takes a count (words:N), got {text!r}")
        try:
            positive_int(arg)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"words:N needs N a positive integer (the N most frequent words), "
                                             f"got {text!r}") from None
    return text


def folds_count(text: str) -> int:
    """argparse type for ``--folds``: an integer >= 2 (one fold cannot hold out anything)."""
    n = positive_int(text)
    if n < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (train on some groups, test on the others), got {text!r}")
    return n


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "probe",
        help="layerwise linear probes (phones, words, speaker, domain, ...) on a cache",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--cache", required=True, help="activation cache directory (workbench cache build)")
    p.add_argument("--target", required=True, type=target_spec,
                   help="phones | words | words:N | speaker | domain | any frame-table column")
    p.add_argument("--hooks", nargs="+", default=["all"], help="hook names or globs; 'all' for every cached hook")
    p.add_argument("--sae", default=None, help="probe SAE codes from this SAE directory (SAELens layout)")
    p.add_argument("--topk", default=None, type=int_list,
                   help="with --sae: also probe on the k most discriminative SAE features, e.g. 1,4,16,64")
    p.add_argument("--split", default="speaker", help="grouped folds by 'speaker' or 'clip' (or a column)")
    p.add_argument("--folds", type=folds_count, default=5, help="number of grouped folds (capped at the number of groups)")
    p.add_argument("--pooling", default="frame", choices=["frame", "segment", "clip"],
                   help="one sample per frame, per labelled segment (mean of its frames), or per clip")
    p.add_argument("--max-frames", type=positive_int, default=None, help="cap on samples (seeded random subset)")
    p.add_argument("--control-types", default="context",
                   help="control-task types: 'context' (label with its neighbours / clip), 'label', or a column")
    p.add_argument("--C", type=positive_float, default=None,
                   help="fixed inverse L2 strength; default: chosen per fold by grouped inner validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (CSV, JSON, HTML)")
    p.add_argument("--no-resume", action="store_true", help="recompute hooks already finished in --out")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="probe a cache whose build did not finish (recorded in OUT/inputs.json)")
    p.set_defaults(func=run)
    from probes.tokens.cli import register as register_tokens

    register_tokens(subparsers)  # `workbench tokens` (analyze, units, compare)
    register_conditions(subparsers)  # workbench conditions: noise, enhancement, layerwise similarity
    return p


def run(args) -> int:

    from workbench.atomic import artifact_dir
    from workbench.cache import ActivationCache
    from workbench.cache.inputs import cache_inputs, require_complete

    # Everything checkable without fitting is checked before the sweep (which may take minutes).
    if args.topk and not args.sae:
        raise ValueError("--topk needs --sae (it ranks SAE features)")
    check_out_dir(args.out, resume_flag=None)  # a rerun resumes from --out/checkpoints
    cache = ActivationCache.open(args.cache)
    allowed = require_complete(cache, args.allow_incomplete)  # an unfinished cache only when asked, and recorded
    hooks = "all" if args.hooks == ["all"] else args.hooks
    _check_columns(cache, args)
    if args.sae:
        from workbench.features import load_feature_dictionaries

        load_feature_dictionaries(args.sae)  # a damaged SAE fails here, naming its file
    # locked while it runs, inputs recorded; checkpoints of another cache are keyed apart and not reused (sweep)
    with artifact_dir(args.out, cache_inputs(cache), about={"cache": str(cache.root), "cache_state": allowed},
                      resumable=True, check_inputs=False):
        return _run(args, cache, hooks)


def _run(args, cache, hooks) -> int:
    from pathlib import Path

    from probes.estimator import LinearProbe
    from probes.report import write_report
    from probes.sweep import sweep

    ckpt = None if args.no_resume else Path(args.out) / "checkpoints"
    result = sweep(
        cache, args.target, hooks=hooks, features=args.sae or "raw", split=args.split, folds=args.folds,
        pooling=args.pooling, max_frames=args.max_frames, seed=args.seed, control_types=args.control_types,
        checkpoint_dir=ckpt, probe=LinearProbe(C=args.C, random_state=args.seed), verbose=True,
    )
    topk = None
    if args.topk:
        from probes.sae_features import topk_sweep

        ks = args.topk
        topk = topk_sweep(cache, args.target, args.sae, ks=ks, hooks=hooks, split=args.split, folds=args.folds,
                          pooling=args.pooling, max_frames=args.max_frames, seed=args.seed,
                          probe=LinearProbe(C=args.C, random_state=args.seed))
    paths = write_report(result, args.out, topk=topk)
    cols = ["hook", "accuracy", "accuracy_std", "majority", "control_accuracy", "selectivity"]
    print(result.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"best layer: {result.best_hook}; wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _check_columns(cache, args) -> None:
    """``--target``, ``--split`` and ``--control-types`` name columns the frame table has (``KeyError`` if not)."""
    columns = set(cache.frames().columns)
    name = args.target.partition(":")[0]
    if name not in ("phones", "words") and args.target not in columns:
        raise KeyError(f"--target {args.target!r}: not a frame-table column of {cache.root} "
                       f"(columns: {sorted(c for c in columns if not c.endswith('_seg'))})")
    if name in ("phones", "words") and name not in columns:
        raise KeyError(f"--target {args.target!r}: the cache {cache.root} has no {name} tier")
    split = {"speaker": "speaker", "clip": "clip_id"}.get(args.split, args.split)
    if split not in columns:
        raise KeyError(f"--split {args.split!r}: no column {split!r} in the frame table of {cache.root}")
    if args.control_types not in ("context", "label") and args.control_types not in columns:
        raise KeyError(f"--control-types {args.control_types!r}: use 'context', 'label' or a frame-table column")


def register_conditions(subparsers) -> None:
    """``workbench conditions``: :mod:`probes.enhancement` on a ``workbench corpus mix`` corpus."""
    c = subparsers.add_parser("conditions", help="noisy vs clean vs enhanced: SI-SNR, WER, layerwise CKA, probe "
                              "robustness (a corpus from `workbench corpus mix`)")
    c.add_argument("--corpus", required=True, help="corpus written by workbench corpus mix (clean + noisy versions)")
    c.add_argument("--model", default="whisper-tiny.en", help="the ASR model compared across conditions")
    c.add_argument("--enhancers", nargs="*", default=["nsnet2"], help="nsnet2 | nsnet2-48k | gtcrn | deepfilternet3")
    c.add_argument("--hooks", default="encoder.blocks.*.hook_resid_post", help="hook glob of the ASR model")
    c.add_argument("--noise-only", default=None, help="corpus of noise clips: hallucination rate plain vs enhanced")
    c.add_argument("--out", required=True, help="output folder (tables, plots, enhanced audio)")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_run_conditions)


def _run_conditions(args) -> int:
    from probes.enhancement import evaluate_conditions

    t = evaluate_conditions(args.corpus, args.model, args.enhancers, args.out, hooks=args.hooks,
                            noise_only=args.noise_only, verbose=not args.quiet)
    print(t["wer"].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(t["quality"]):
        print(t["quality"].groupby(["condition", "enhancer"]).improvement_db.mean().round(2).to_string())
    print(f"wrote {args.out}")
    return 0
