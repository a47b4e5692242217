"""``workbench sae train`` and ``workbench sae eval``.

Example
-------
$ workbench sae train --cache work/cache --hook encoder.blocks.3.hook_resid_post --expansion 8 --k 50 \\
      --tokens 5000000 --out work/saes/run1
$ torchrun --nproc_per_node 2 -m workbench sae train --cache work/cache --hook 'encoder.blocks.*.hook_resid_post' \\
      --tokens 5000000 --out work/saes/all      # data-parallel; one SAE per layer in work/saes/all/HOOK/
$ workbench sae eval --sae work/saes/run1 --cache work/cache --model whisper-tiny.en --out work/eval/run1
$ workbench sae bench --sae work/saes/run1 work/saes/run2 --cache work/cache --model whisper-tiny.en --out work/bench
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from workbench.conventions import resolve_hooks
from workbench.cache.inputs import add_allow_incomplete
from workbench.validate import non_negative_int, positive_float, positive_int, probability

log = logging.getLogger(__name__)
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}


def register(subparsers) -> None:
    p = subparsers.add_parser("sae", help="train and evaluate Batch-Top-K sparse autoencoders",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="sae_command", metavar="SAE_COMMAND", required=True)

    t = sub.add_parser("train", help="train one SAE per hook on a cache (one pass, side by side)")
    t.add_argument("--cache", default=None, help="activation cache directory (or --model + --corpus to stream)")
    t.add_argument("--model", default=None, help="stream activations from this model (no cache; with --corpus)")
    t.add_argument("--corpus", default=None, help="corpus directory or manifest.jsonl to stream (with --model)")
    t.add_argument("--buffer-batches", type=positive_int, default=16, help="streaming shuffle buffer, in batches")
    t.add_argument("--model-device", default="cpu", help="device of the streamed model (cpu, cuda); training stays on CPU")
    t.add_argument("--hook", action="append", required=True, help="hook name or glob (repeat for several)")
    t.add_argument("--expansion", type=positive_int, default=8)
    t.add_argument("--k", type=positive_int, default=50)
    t.add_argument("--tokens", type=positive_int, default=50_000_000, help="frames each SAE sees")
    t.add_argument("--out", required=True)
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=positive_int, default=4096)
    t.add_argument("--lr", type=positive_float, default=None, help="default 2e-4 / sqrt(d_sae / 2^14)")
    t.add_argument("--k-anneal-from", type=positive_int, default=None)
    t.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                   help="encoder matmul dtype; auto: bfloat16 only where this machine computes it fast (logged)")
    t.add_argument("--no-bf16", action="store_true", help="deprecated: same as --dtype float32")
    t.add_argument("--threads", type=positive_int, default=2)
    t.add_argument("--holdout-clips", type=probability, default=None, metavar="FRACTION",
                   help="hold out this fraction of each domain's clips (by --holdout-by) from training; "
                        "written to OUT/holdout.json, which `sae eval` scores on")
    t.add_argument("--holdout-by", choices=["speaker", "clip"], default="speaker",
                   help="speaker: clips sharing a source recording or a speaker stay together; clip: clips sharing "
                        "a source recording (workbench.conventions.groups_of)")
    t.add_argument("--max-norm-ratio", type=non_negative_float_or_none, default=10.0,
                   help="do not train on frames above this multiple of the median norm (Whisper's massive frames; "
                        "recorded in train_config.json, and sae eval / the splice treat them alike); 0: all frames")
    t.add_argument("--holdout-file", default=None, help="hold out exactly these clips (holdout.json or id list)")
    t.add_argument("--allow-incomplete", action="store_true",
                   help="train on a cache whose build did not finish (recorded in OUT/inputs.json)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=run_train)

    e = sub.add_parser("eval", help="metrics, analyses, per-feature summaries and the spliced-in effect")
    e.add_argument("--sae", required=True, help="an SAE directory or a training --out directory")
    e.add_argument("--cache", required=True)
    e.add_argument("--model", default=None, help="model spec for the spliced-in effect (e.g. whisper-tiny.en)")
    e.add_argument("--out", required=True)
    e.add_argument("--hook", default=None, help="hook (default: the one the SAE was trained on)")
    e.add_argument("--max-frames", type=positive_int, default=100_000, help="frames sampled from the cache")
    e.add_argument("--splice-clips", type=non_negative_int, default=20,
                   help="held-out clips with transcripts for the spliced-in WER (as many without, for the errors)")
    e.add_argument("--holdout-file", default=None,
                   help="evaluate on exactly these clips (holdout.json or a list of clip ids); default: the clips "
                        "the training run's holdout.json did not train on, else all clips (in-sample)")
    e.add_argument("--compare", default=None,
                   help="a second SAE or training --out dir (other seed) for the consistency analysis")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--erasure-probe", choices=["fixed", "retrained", "both", "none"], default="both",
                   help="concept erasure read-out: fixed probe, strict retrained probe (slow), both, or none "
                        "(no erasure analysis)")
    e.add_argument("--allow-incomplete", action="store_true",
                   help="evaluate on a cache whose build did not finish (recorded in OUT/HOOK/inputs.json)")
    e.add_argument("--force", action="store_true",
                   help="evaluate with --hook even when it is not the hook the SAE was trained on")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=run_eval)
    _register_bench(sub)


def _register_bench(sub) -> None:
    b = sub.add_parser("bench", help="SAE bench: core, sparse probing, absorption, erasure, explanations (held out)")
    b.add_argument("--sae", nargs="+", required=True,
                   help="SAE directories, training --out directories (one SAE per hook) or ae.pt files")
    b.add_argument("--cache", required=True, help="activation cache holding the held-out clips")
    b.add_argument("--model", default=None, help="model spec for spliced WER and decoder KL (e.g. whisper-tiny.en)")
    b.add_argument("--out", required=True)
    b.add_argument("--hook", default=None, help="hook (default: the one each SAE was trained on)")
    b.add_argument("--max-frames", type=positive_int, default=20_000, help="held-out frames sampled per SAE")
    b.add_argument("--splice-clips", type=non_negative_int, default=5, help="held-out clips with transcripts for WER/KL")
    b.add_argument("--holdout-file", default=None, help="score exactly these clips (as in sae eval)")
    b.add_argument("--only", nargs="+", default=None,
                   choices=["core", "splice", "probing", "absorption", "erasure", "explain"], help="run only these families")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--quiet", action="store_true")
    add_allow_incomplete(b, "the log")
    b.set_defaults(func=run_bench_cmd)


def run_bench_cmd(args) -> int:
    """``workbench sae bench`` (see :mod:`sae.bench.run`)."""
    from sae.bench.run import run_bench
    from sae.bench.saes import find_saes, load_bench_sae
    from workbench.cache.inputs import open_complete

    cache = open_complete(args.cache, args.allow_incomplete)  # an unfinished cache only when asked
    for _, path in find_saes(args.sae):  # a damaged SAE fails here, naming its file, before the model load
        load_bench_sae(path)
    model = None
    if args.model:
        import workbench.models

        model = workbench.models.load(args.model)
    table = run_bench(args.sae, cache, model, args.out, hook=args.hook, max_frames=args.max_frames,
                      splice_clips=args.splice_clips, holdout_file=args.holdout_file, seed=args.seed,
                      families=args.only, verbose=not args.quiet)
    cols = [c for c in ("name", "fvu", "rel_error_median_no_massive", "l0", "dead_frac", "wer_change", "kl_mean",
                        "probe_phones_sae_k1", "absorption_mean", "tpp", "expl_frac_f1_ge_0.5", "seconds") if c in table]
    print(table[cols].to_string(index=False))
    print(f"bench: {Path(args.out) / 'bench.csv'}, {Path(args.out) / 'bench.html'}")
    return 0


def non_negative_float_or_none(text: str) -> float | None:
    """``--max-norm-ratio``: a positive float, or 0 / "none" for no filter."""
    if text.strip().lower() in ("0", "none", "0.0"):
        return None
    value = positive_float(text)
    if value <= 1:
        raise argparse.ArgumentTypeError(f"must be > 1 (a multiple of the median norm) or 0 for no filter, got {text!r}")
    return value


def _resolve_hooks(patterns, available) -> list[str]:
    """``--hook`` names/globs -> cached hooks (the one resolver: :func:`workbench.conventions.resolve_hooks`)."""
    return resolve_hooks(patterns, available, what="the cache (--hook)", allow_all=False)


def _dtype_arg(args) -> str:
    if args.no_bf16:
        log.warning("--no-bf16 is deprecated: use --dtype float32")
        return "float32"
    return args.dtype


def run_train(args) -> int:
    """Under ``torchrun --nproc_per_node N -m workbench sae train ...`` the ranks train data-parallel (gloo)."""
    from workbench.cache.distributed import init_from_env, shutdown

    dist, _ = init_from_env(device="cpu")  # the trainer's sparse kernels run on the CPU: gloo
    try:
        return _run_train(args, dist)
    finally:
        shutdown()


def _run_train(args, dist) -> int:
    from sae.config import TrainConfig
    from sae.train import CHECKPOINT, train
    from workbench.cache import ActivationCache
    from workbench.cache.inputs import cache_inputs, require_complete
    from workbench.names import check_component

    if args.cache is None:
        return _run_train_streaming(args, dist)
    cache = ActivationCache.open(args.cache)
    allowed = require_complete(cache, args.allow_incomplete)  # an unfinished cache only when asked, and recorded
    hooks = [check_component(h, "hook", cache.root / "cache.json") for h in _resolve_hooks(args.hook, cache.hooks)]
    cfg = TrainConfig(expansion=args.expansion, k=args.k, tokens=args.tokens, batch_size=args.batch_size, lr=args.lr,
                      k_anneal_from=args.k_anneal_from, seed=args.seed, dtype=_dtype_arg(args), threads=args.threads)
    from sae.holdout import (  # held-out clips never reach training
        for_training,
        source_without_heldout,
    )

    out = Path(args.out)
    if (out / CHECKPOINT).exists() and not args.resume:  # before holdout.json is written into the old run
        raise FileExistsError(f"{out / CHECKPOINT} exists: pass --resume to continue it, or use another --out")
    inputs = {**cache_inputs(cache), "hooks": hooks}
    with _locked_run(dist, out, inputs, {"cache": str(cache.root), "cache_state": allowed},
                     check=(out / CHECKPOINT).exists()):
        split = for_training(cache, args.out, args.holdout_clips, args.holdout_by, args.seed, args.holdout_file)
        data = source_without_heldout(cache, hooks, cfg, split, max_norm_ratio=args.max_norm_ratio)
        saes = train(data, hooks, cfg, out=args.out, resume=args.resume, verbose=not args.quiet)
    for h in saes if dist.is_main else ():
        print(f"{h}: {Path(args.out) / h}")
    return 0


def _locked_run(dist, out: Path, inputs: dict, about: dict, check: bool):
    """Rank 0 locks ``out`` and checks/records its inputs (:func:`workbench.atomic.artifact_dir`,
    in place: the checkpoint lives there); a refusal reaches every rank before any trains."""
    import contextlib

    from workbench.atomic import artifact_dir

    stack, problem = contextlib.ExitStack(), None
    if dist.is_main:
        try:
            stack.enter_context(artifact_dir(out, inputs, about=about, resumable=True, check_inputs=check))
        except Exception as e:  # tell the other ranks before raising here
            problem = e
    msg = dist.broadcast(None if problem is None else f"{type(problem).__name__}: {problem}")
    if problem is not None:
        raise problem
    if msg is not None:
        raise RuntimeError(f"rank 0 refused {out}: {msg}")
    return stack


def _run_train_streaming(args, dist) -> int:
    """``sae train --model M --corpus C``: activations streamed from the model (:mod:`sae.stream`)."""
    from sae.config import TrainConfig
    from sae.stream import stream_source
    from sae.train import CHECKPOINT, train

    if not (args.model and args.corpus):
        raise ValueError("sae train needs --cache, or --model and --corpus to stream activations without a cache")
    cfg = TrainConfig(expansion=args.expansion, k=args.k, tokens=args.tokens, batch_size=args.batch_size, lr=args.lr,
                      k_anneal_from=args.k_anneal_from, seed=args.seed, dtype=_dtype_arg(args), threads=args.threads)
    out = Path(args.out)
    if (out / CHECKPOINT).exists() and not args.resume:
        raise FileExistsError(f"{out / CHECKPOINT} exists: pass --resume to continue it, or use another --out")
    inputs = {"model": args.model, "corpus": str(args.corpus), "hooks": list(args.hook)}
    with _locked_run(dist, out, inputs, {"model": args.model, "corpus": str(args.corpus), "streamed": True},
                     check=(out / CHECKPOINT).exists()):
        data = stream_source(args.model, args.corpus, args.hook, args.batch_size, args.seed, out=args.out,
                             holdout_fraction=args.holdout_clips, holdout_by=args.holdout_by,
                             holdout_file=args.holdout_file, buffer_batches=args.buffer_batches,
                             device=args.model_device, max_norm_ratio=args.max_norm_ratio)
        saes = train(data, data.hooks, cfg, out=args.out, resume=args.resume, verbose=not args.quiet)
    for h in saes if dist.is_main else ():
        print(f"{h}: {Path(args.out) / h}")
    return 0


def _sae_dirs(path: Path) -> list[Path]:
    if (path / "cfg.json").is_file() or (path / "ae.pt").is_file() or path.is_file():
        return [path]
    found = sorted(p.parent for p in path.glob("*/cfg.json"))
    if not found:
        raise FileNotFoundError(f"no SAE in {path}: expected cfg.json + sae_weights.safetensors or sub-folders with them")
    return found


def run_eval(args) -> int:
    from workbench.cache import ActivationCache

    cache = ActivationCache.open(args.cache)
    out = Path(args.out)
    folders = _sae_dirs(Path(args.sae))
    from sae.io import load_sae
    from workbench.cache.inputs import cache_inputs, require_complete
    from workbench.names import check_component

    allowed = require_complete(cache, args.allow_incomplete)  # an unfinished cache only when asked, and recorded
    hooks = []
    for folder in folders:  # a damaged or mismatched SAE fails here, naming its file, before the model load
        trained = load_sae(folder).cfg.hook_name
        hook = args.hook or trained
        if not hook:
            raise ValueError(f"{folder}: the SAE does not say which hook it was trained on; pass --hook")
        if args.hook and trained and args.hook != trained:
            msg = f"{folder} was trained on {trained!r}, not --hook {args.hook!r}: its figures there mean little"
            if not args.force:
                raise ValueError(f"{msg}; pass --force to evaluate it on that hook anyway")
            log.warning("%s (--force)", msg)
        if hook not in cache.hooks:
            raise ValueError(f"{folder}: hook {hook!r} is not in cache {cache.root}; cached hooks: {cache.hooks}")
        load_sae(folder, d_in=cache.d_model(hook), hook=hook)
        hooks.append(check_component(hook, "hook", folder / "cfg.json"))
    model = None
    if args.model:
        import workbench.models

        model = workbench.models.load(args.model)
    from workbench.atomic import artifact_dir

    results = []
    for folder, hook in zip(folders, hooks):
        # out/HOOK is replaced only when its evaluation finished: a failed one leaves the old one as it was
        about = {"cache": str(cache.root), "cache_state": allowed, "sae": str(folder), "model": args.model}
        with artifact_dir(out / hook, {**cache_inputs(cache), "hook": hook}, about=about, keep=_NOT_EVAL) as dest:
            result = evaluate_sae(folder, cache, out, hook=args.hook, model=model, max_frames=args.max_frames,
                                  splice_clips=args.splice_clips, compare=args.compare, seed=args.seed,
                                  verbose=not args.quiet, holdout_file=args.holdout_file,
                                  erasure_probes=_ERASURE[args.erasure_probe], dest=dest)
        results.append(result)
        shown = {k: result[k] for k in ("hook", "in_sample", "metrics") if k in result}
        if "splice" in result:  # the headline of the spliced-in effect, without the per-clip transcripts
            shown["splice"] = {k: v for k, v in result["splice"].items() if k in _SPLICE_HEADLINE}
            shown["splice"]["wer_distribution"] = {k: v for k, v in result["splice"].get("wer_distribution", {}).items()
                                                   if k != "worst"}
        print(json.dumps(shown, indent=2, default=float))
    if len(results) > 1:
        from sae.summaries import layer_summary

        table = layer_summary(results, out)
        print(table[table["domain"] == "all"].drop(columns="domain").to_string(index=False))
        print(f"layer summary: {out / 'layers.csv'}, {out / 'layers.html'}")
    return 0


#: files other commands put beside an evaluation (``sae bench --out`` the same folder): kept when it is redone
_NOT_EVAL = ("explanations.csv", "bench*")
_ERASURE = {"fixed": ("fixed",), "retrained": ("retrained",), "both": ("fixed", "retrained"), "none": ()}
_SPLICE_HEADLINE = ("clips", "rel_error_hook", "rel_error_output", "wer_clean", "wer_spliced", "wer_change", "wer_clips")


def evaluate_sae(folder, cache, out: Path, hook: str | None = None, model=None, max_frames: int = 100_000,
                 splice_clips: int = 20, compare=None, seed: int = 0, verbose: bool = True,
                 holdout_file=None, erasure_probes=("fixed", "retrained"), dest: Path | None = None) -> dict:
    """Everything ``workbench sae eval`` reports for one SAE; writes ``out/<hook>/eval.json`` and friends.

    Every figure is on held-out clips when the SAE's run recorded a split (``holdout.json``, see
    :mod:`sae.holdout`) or ``holdout_file`` names the clips; otherwise on all clips, flagged
    ``in_sample``. Metrics are given pooled and per domain (``metrics_by_domain``).
    """
    import torch  # here, not at the top: `workbench --help` and non-SAE commands start without it

    from sae.analyses import concept_erasure, domain_specialization, seed_consistency
    from sae.holdout import eval_selection
    from sae.io import load_sae
    from sae.massive import recorded_filter, split_massive, summary
    from sae.metrics import density_histogram, evaluate, evaluate_by_domain, to_json
    from sae.summaries import feature_summaries
    from workbench.atomic import write_json

    probe = load_sae(folder)
    hook = hook or probe.cfg.hook_name
    if not hook:
        raise ValueError(f"{folder}: the SAE does not say which hook it was trained on; pass --hook")
    if hook not in cache.hooks:
        raise ValueError(f"hook {hook!r} is not in cache {cache.root}; cached hooks: {cache.hooks}")
    sae = load_sae(folder, d_in=cache.d_model(hook), hook=hook)
    dest = dest if dest is not None else out / hook  # run_eval passes the temporary folder of out/hook
    selection = eval_selection(cache, folder, holdout_file)
    if selection["in_sample"]:
        log.warning("%s: no holdout.json from its training run and no --holdout-file: figures are IN-SAMPLE "
                    "(all %d clips of %s)", folder, len(selection["clips"]), cache.root)
    rng = np.random.default_rng(seed)
    pool = cache.select(hook, clips=selection["clips"])
    rows = np.sort(rng.choice(pool, size=min(len(pool), max_frames), replace=False))
    X = torch.from_numpy(cache.load(hook, rows))
    frames = cache.frames(hook).iloc[rows].reset_index(drop=True)
    # massive frames (sae.massive): the SAE's own training filter decides which frames it is scored on
    trained_filter = recorded_filter(folder, hook)
    massive, limit = split_massive(X, trained_filter["norm_limit"] if trained_filter else None,
                                   (trained_filter or {}).get("max_norm_ratio") or 10.0)
    both = {"metrics_all_frames": to_json(evaluate(sae, X.split(8192))),
            "metrics_without_massive": to_json(evaluate(sae, X[torch.from_numpy(~massive)].split(8192)))
            if (~massive).any() else None}
    massive_info = {**summary(X, massive, limit, "10 x the median norm of the evaluated frames (the SAE trained "
                              "on all frames)" if trained_filter is None else "train_config.json"
                              if trained_filter["norm_limit"] is not None else "the evaluated frames' median norm "
                              "x the default ratio (a run from before the filter was recorded)"),
                    "trained_on_massive": trained_filter is None}
    if trained_filter is not None:  # score the SAE on the frames it is a model of; the splice passes the rest
        keep = torch.from_numpy(~massive)
        X, frames = X[keep], frames[~massive].reset_index(drop=True)
    domains = frames["domain"].fillna("unknown").astype(str).to_numpy() if "domain" in frames else None
    by_domain = evaluate_by_domain(sae, X, domains if domains is not None else np.full(len(X), "unknown"))
    metrics = by_domain["all"]
    density_histogram(metrics["density"], dest / "density.html", title=f"Feature density, {hook}")
    result = {"sae": str(folder), "hook": hook, "cache": str(cache.root), "in_sample": selection["in_sample"],
              "holdout": {"source": selection["source"], "clips": len(selection["clips"])},
              "metrics": to_json(metrics), "metrics_scope": "frames without massive ones (as trained)"
              if trained_filter is not None else "all frames (as trained)", **both, "massive_frames": massive_info,
              "metrics_by_domain": {d: to_json(m) for d, m in by_domain.items()}}
    if domains is not None and len(set(domains)) > 1:
        spec = domain_specialization(sae, X, domains)
        result["domain_specialization"] = {k: v for k, v in spec.items() if k != "table"}
        is_speech = domains == "speech"
        for key, readout in (("concept_erasure", "fixed"), ("concept_erasure_retrained_probe", "retrained")):
            if readout not in erasure_probes or not 0 < is_speech.sum() < len(is_speech):
                continue
            erasure = concept_erasure(sae, X, is_speech, seed=seed, probe=readout)
            result[key] = {"concept": "speech vs non-speech", **erasure}
    if "phones" in frames:
        phones = frames["phones"].to_numpy(dtype=object)
        speech = np.array([p is not None and p != "sil" for p in phones])
        is_vowel = np.array([p in VOWELS for p in phones[speech]])
        if speech.sum() >= 50 and 0 < is_vowel.sum() < len(is_vowel):
            for key, readout in (("concept_erasure_vowel", "fixed"), ("concept_erasure_vowel_retrained_probe", "retrained")):
                if readout not in erasure_probes:
                    continue
                erasure = concept_erasure(sae, X[torch.from_numpy(speech)], is_vowel, seed=seed, probe=readout)
                result[key] = {"concept": "vowel vs consonant (speech frames)", **erasure}
    cmp_path = _compare_path(compare, hook) if compare else None
    if compare and cmp_path is None:
        log.warning("--compare %s has no SAE for %s: no consistency analysis", compare, hook)
    if cmp_path is not None:
        other = load_sae(cmp_path, d_in=cache.d_model(hook), hook=hook)
        if other.cfg.hook_name in ("", hook):
            cons = seed_consistency(sae, other, X)
            result["seed_consistency"] = {"other": str(cmp_path),
                                          **{k: v for k, v in cons.items() if not isinstance(v, np.ndarray)}}
        else:
            log.warning("--compare %s was trained on %s, not %s: no consistency analysis", cmp_path,
                        other.cfg.hook_name, hook)
    feature_summaries(sae, X, frames, dest)
    if model is not None:
        result["splice"] = _splice(model, sae, hook, cache, selection["clips"], splice_clips, dest, verbose,
                                   norm_limit=limit if trained_filter else None)
    write_json(dest / "eval.json", result, indent=2, default=_json_default)
    return result


_CLEAN_MEMO: dict = {}  # clean transcripts / outputs per (model, clip), shared by the SAEs of one eval run


def _splice(model, sae, hook: str, cache, clip_ids, n_clips: int, dest: Path, verbose: bool,
            norm_limit: float | None = None) -> dict:
    """Spliced-in effect on up to ``n_clips`` held-out clips with transcripts and as many without;
    the per-clip table goes to ``dest/splice_clips.csv``."""
    from sae.splice import select_clips, spliced_effect
    from workbench.atomic import atomic_path
    from workbench.audio import load_audio

    chosen = select_clips(cache.corpus, clip_ids=clip_ids)
    chosen = [c for c in chosen if c.transcript][:n_clips] + [c for c in chosen if not c.transcript][:n_clips]
    audio = [load_audio(cache.corpus.audio_path(c), sr=model.sample_rate) for c in chosen]
    groups = [str(c.extra.get("source") or "unknown") for c in chosen]  # e.g. espeak-ng vs each real corpus
    res = spliced_effect(model, sae, hook, audio, [c.transcript for c in chosen], verbose=verbose,
                         ids=[c.id for c in chosen], domains=[c.domain for c in chosen], groups=groups,
                         clean_memo=_CLEAN_MEMO, norm_limit=norm_limit)
    table = res.pop("clips_table")
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest / "splice_clips.csv") as tmp:
        table.drop(columns=[c for c in table if c.endswith(("_sq_err", "_sq_norm"))]).to_csv(tmp, index=False)
    return res


def _compare_path(compare, hook: str) -> Path | None:
    """The SAE for ``hook`` in ``compare`` (a training --out dir or one SAE), or None."""
    compare = Path(compare)
    if (compare / hook).is_dir():
        return compare / hook
    if (compare / "cfg.json").is_file() or (compare / "ae.pt").is_file() or compare.is_file():
        return compare
    return None


def _json_default(o):
    if isinstance(o, np.bool_):  # a JSON boolean, not the truthy string "False"
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
