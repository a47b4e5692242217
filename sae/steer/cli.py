"""``workbench steer prepare|fit|eval``: steer Whisper through SAE features (or a class-mean direction).

Example
-------
$ workbench steer prepare work/shared work/synth_speech work/synth_nonspeech --seconds 5 --out work/steer/corpora
$ workbench steer fit --cache CACHE --sae SAE_DIR --concept nonspeech --corpus work/steer/corpora/dev \\
      --model whisper-tiny.en --out STEER_DIR
$ workbench steer eval --steering STEER_DIR --corpus work/steer/corpora/eval --out STEER_DIR/eval
"""
from __future__ import annotations

import shlex
import sys

from workbench.validate import (
    int_list,
    non_negative_float,
    positive_float,
    positive_int,
)


def _floats(s: str) -> list[float]:
    try:
        return [float(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {s!r}") from None


def _fractions(s: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (part.split("=") for part in s.split(","))}
    except ValueError:
        raise ValueError(f"--fractions: expected NAME=FRACTION,..., got {s!r}") from None


def register(subparsers) -> None:
    p = subparsers.add_parser("steer", help="steer Whisper through SAE features: fit, evaluate",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="steer_command", metavar="ACTION", required=True)

    pr = sub.add_parser("prepare", help="cut non-speech into segments and split corpora by source into fit/dev/eval")
    pr.add_argument("src", nargs="+", help="corpus directories or manifests (merged)")
    pr.add_argument("--out", required=True, help="writes OUT/<split>/manifest.jsonl")
    pr.add_argument("--seconds", type=positive_float, default=5.0, help="segment length for long non-speech clips")
    pr.add_argument("--fractions", type=_fractions, default={"fit": 0.5, "dev": 0.2, "eval": 0.3})
    pr.add_argument("--seed", type=int, default=0)
    pr.set_defaults(func=run_prepare)

    f = sub.add_parser("fit", help="select features on a cache, sweep N and strength on dev clips, save STEER_DIR")
    f.add_argument("--cache", required=True, help="activation cache of the fit split")
    f.add_argument("--allow-incomplete", action="store_true", help="use a --cache whose build did not finish")
    f.add_argument("--sae", default=None, help="SAE directory (method sae; other methods edit at its hook unless --hook)")
    f.add_argument("--concept", default="nonspeech", help="nonspeech | domain=NAME | TIER=LABEL")
    f.add_argument("--corpus", required=True, help="corpus whose clips outside the fit split form the dev split")
    f.add_argument("--model", default=None, help="model spec (default: the cache's)")
    f.add_argument("--out", required=True, help="steering directory")
    f.add_argument("--method", choices=["sae", "direction", "vector"], default="sae",
                   help="sae: SAE features; direction: class-mean direction; vector: optimised steering vector")
    f.add_argument("--selector", choices=["contrast", "attribution"], default=None,
                   help="how SAE features are chosen (default: the best found, see docs/readme/steering.md)")
    f.add_argument("--edit", default=None,
                   help="sae: scale|ablate|negate|clamp|clamp_target; direction/vector: subtract|project|add")
    f.add_argument("--gate", choices=["none", "frame", "detector"], default="none",
                   help="detector: a linear detector (detect-then-steer) gates the edit")
    f.add_argument("--detector-level", choices=["clip", "frame"], default="clip")
    f.add_argument("--detector-space", choices=["acts", "sae"], default=None,
                   help="acts: activations at the hook; sae: the chosen SAE features' codes (feature-based gate)")
    f.add_argument("--candidates", type=positive_int, default=32, help="attribution: candidates confirmed by patching")
    f.add_argument("--max-fit-clips", type=positive_int, default=120,
                   help="attribution / optimised vector: fit clips used (class-balanced seeded subset)")
    f.add_argument("--vector-steps", type=positive_int, default=60)
    f.add_argument("--vector-kl", type=non_negative_float, default=1.0, help="KL weight on speech clips")
    f.add_argument("--hook", default=None, help="hook (default: the SAE's, or the cache's only one)")
    f.add_argument("--n-features", type=int_list, default=[1, 2, 4, 8, 16, 32])
    f.add_argument("--strengths", type=_floats, default=None, help="comma-separated (default per edit)")
    f.add_argument("--max-wer-increase", type=non_negative_float, default=0.005, help="WER budget of the sweep (absolute)")
    f.add_argument("--max-frames", type=positive_int, default=60000)
    f.add_argument("--permutations", type=positive_int, default=200)
    f.add_argument("--also-hook", action="append", default=[], metavar="HOOK",
                   help="vector: also edit this hook (repeat), trained jointly, e.g. encoder.blocks.2.hook_resid_post")
    f.add_argument("--max-dev-clips", type=positive_int, default=None, help="sweep on a seeded random subset of N dev clips")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=run_fit)

    e = sub.add_parser("eval", help="held-out evaluation against plain decoding, the no-speech gate and Silero VAD")
    e.add_argument("--steering", required=True, help="steering directory")
    e.add_argument("--corpus", required=True, help="evaluation corpus (clips the fit and sweep never saw)")
    e.add_argument("--out", required=True, help="writes OUT/eval.json and OUT/clips.csv")
    e.add_argument("--also", action="append", default=[], help="another steering directory to compare (repeat)")
    e.add_argument("--model", default=None, help="model spec (default: the artifact's)")
    e.add_argument("--no-vad", action="store_true")
    e.add_argument("--bootstrap", type=positive_int, default=2000)
    e.add_argument("--max-clips", type=positive_int, default=None, help="evaluate a seeded random subset of N clips")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=run_eval)


def run_prepare(args) -> int:
    from sae.steer.data import prepare

    for name, path in prepare(args.src, args.out, args.seconds, args.fractions, args.seed).items():
        print(f"{name}: {path}")
    return 0


def run_fit(args) -> int:
    from sae.steer.fit import DEFAULT_SELECTOR, fit

    from workbench.cache.inputs import open_complete

    cache = open_complete(args.cache, args.allow_incomplete)  # an unfinished cache only when asked
    steering = fit(cache, sae=args.sae, concept=args.concept, corpus=args.corpus, model=args.model, out=args.out,
                   method=args.method, edit=args.edit, gate=args.gate, hook=args.hook, n_features=args.n_features,
                   strengths=args.strengths, max_wer_increase=args.max_wer_increase, max_frames=args.max_frames,
                   n_permutations=args.permutations, max_dev_clips=args.max_dev_clips, seed=args.seed,
                   verbose=not args.quiet, command="workbench " + shlex.join(sys.argv[1:]),
                   selector=args.selector or DEFAULT_SELECTOR, detector_level=args.detector_level,
                   detector_space=args.detector_space, n_candidates=args.candidates, max_fit_clips=args.max_fit_clips,
                   vector_options={"steps": args.vector_steps, "kl_weight": args.vector_kl,
                                   "extra_hooks": args.also_hook})
    c = steering.sweep["chosen"]
    print(f"{args.out}: {steering.describe()}")
    print(f"  dev: hallucination {steering.sweep['baseline']['hallucination_rate']:.3f} -> "
          f"{c['hallucination_rate']:.3f}, WER {_fmt(steering.sweep['baseline']['wer'])} -> {_fmt(c['wer'])}")
    return 0


def run_eval(args) -> int:
    from sae.steer.evaluate import evaluate, table

    model = None
    if args.model:
        from workbench.models import load

        model = load(args.model)
    res = evaluate(args.steering, args.corpus, model=model, out=args.out, also=args.also, vad=not args.no_vad,
                   n_boot=args.bootstrap, seed=args.seed, max_clips=args.max_clips, verbose=not args.quiet)
    print(table(res).to_string(index=False))
    for cond, metrics in res["by_condition"].items():
        print(f"\nclips: {cond}")
        print(table({"conditions": res["conditions"], **metrics}).to_string(index=False))
    print(f"wrote {args.out}/eval.json")
    return 0


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"

