"""``workbench tokens``: analyze integer tracks (codec codes, cochlear tokens, units), make units.

Example
-------
$ workbench tokens units --cache work/caches/whisper --hook encoder.blocks.2.hook_resid_post --k 500 --out work/caches/units-b2
$ workbench tokens analyze --cache work/caches/units-b2 --out work/tokens/units-b2
$ workbench tokens analyze --cache work/caches/codec --hook quantizer.hook_codes --reencode 5 --out work/tokens/codec
$ workbench tokens compare work/tokens/units-b2 work/tokens/codec --out work/tokens/compare.csv
"""
from __future__ import annotations

import argparse

from workbench.validate import check_out_dir, positive_float, positive_int


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tokens", help="token analyses (usage, purity, consistency, stability) and k-means units",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("analyze", help="usage, purity/MI, consistency (DRI), stability of an integer track",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("--cache", required=True, help="cache with an integer hook (codes, tokens, units)")
    a.add_argument("--hook", default=None, help="the integer hook (default: the cache's only one)")
    a.add_argument("--corpus", default=None, help="corpus (manifest.jsonl or folder) for the audio; default: the cache's")
    a.add_argument("--out", required=True, help="output directory (workspace: tokens/NAME)")
    a.add_argument("--targets", nargs="+", default=["phones", "speaker", "domain"], help="label columns for purity/MI")
    a.add_argument("--no-model", action="store_true",
                   help="skip consistency and stability (they load the model and re-encode audio)")
    a.add_argument("--reencode", type=int, default=0, help="decode/re-encode N times (codecs with a decoder)")
    a.add_argument("--max-clips", type=positive_int, default=8, help="clips used for consistency and stability")
    a.add_argument("--slice-s", type=positive_float, default=1.0, help="slice length for consistency (s)")
    a.add_argument("--context-s", type=positive_float, default=1.0, help="context each side of a slice (s)")
    a.add_argument("--no-cochleagram", action="store_true", help="skip each token's mean cochleagram")
    a.add_argument("--cochleagram-cache", default="auto",
                   help="cache with cochleagram.hook_out of the same corpus for the token cochleagrams: 'auto' "
                        "(the cache itself or a sibling in its caches/ folder), a directory, or 'none' (compute "
                        "from the audio)")
    a.add_argument("--device", default="cpu")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--allow-incomplete", action="store_true", help="use a cache whose build did not finish")
    a.set_defaults(func=run_analyze)
    u = sub.add_parser("units", help="k-means units of a cached float hook, written as a token cache",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    u.add_argument("--cache", required=True)
    u.add_argument("--hook", required=True, help="a float hook of the cache")
    u.add_argument("--k", type=positive_int, default=500, help="number of units")
    u.add_argument("--max-frames", type=positive_int, default=200_000, help="frames sampled for fitting")
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--out", required=True, help="new token cache directory (workspace: caches/NAME)")
    u.add_argument("--allow-incomplete", action="store_true", help="use a cache whose build did not finish")
    u.set_defaults(func=run_units)
    c = sub.add_parser("compare", help="one table across `tokens analyze` outputs")
    c.add_argument("dirs", nargs="+", help="output directories of `tokens analyze`")
    c.add_argument("--out", default=None, help="write the table as CSV here")
    c.set_defaults(func=run_compare)
    return p


def run_analyze(args) -> int:
    from probes.tokens.analyze import analyze_cache, integer_hook
    from workbench.cache.inputs import open_complete

    cache = open_complete(args.cache, args.allow_incomplete)  # an unfinished cache only when asked
    integer_hook(cache, args.hook)  # a float or unknown hook fails before any work
    corpus = None
    if args.corpus:
        from workbench.corpus import load_corpus

        corpus = load_corpus(args.corpus)
    if args.reencode < 0:
        raise ValueError(f"--reencode must be >= 0, got {args.reencode}")
    paths = analyze_cache(cache, args.out, hook=args.hook, corpus=corpus, targets=args.targets,
                          robust_tests=not args.no_model, reencode_n=args.reencode, max_clips=args.max_clips,
                          slice_s=args.slice_s, context_s=args.context_s, cochleagram=not args.no_cochleagram,
                          device=args.device, seed=args.seed,
                          coch_cache=None if args.cochleagram_cache == "none" else args.cochleagram_cache)
    import pandas as pd

    print(pd.read_csv(paths["usage"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(pd.read_csv(paths["purity"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for name in ("consistency", "stability"):
        if name in paths:
            print(pd.read_csv(paths[name]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out}")
    return 0


def run_units(args) -> int:
    from probes.tokens.units import fit_units, write_token_cache
    from workbench.cache.inputs import open_complete

    check_out_dir(args.out, resume_flag=None)
    cache = open_complete(args.cache, args.allow_incomplete)  # an unfinished cache only when asked
    cache.hook_dtype(args.hook)  # KeyError naming the cached hooks
    ids, cents, info = fit_units(cache, args.hook, k=args.k, max_frames=args.max_frames, seed=args.seed, verbose=False)
    out = write_token_cache(cache, args.hook, ids, args.out, centroids=cents, units=info)
    print(f"{len(ids)} frames -> {len(set(ids.tolist()))} of {args.k} units used "
          f"(fit {info['fit_seconds']} s on {info['fit_frames']} frames); wrote {out}")
    return 0


def run_compare(args) -> int:
    from probes.tokens.analyze import compare

    df = compare(args.dirs, args.out)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
