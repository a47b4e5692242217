"""``workbench neuro fit | simulate | naplib``.

Example
-------
$ workbench neuro naplib --out work/naplib
$ workbench neuro fit --recording work/naplib/sub-naplib_ieeg.fif --corpus work/naplib/corpus \\
      --model whisper-tiny.en --hooks 'encoder.blocks.*.hook_resid_post' --out work/ws/neuro/naplib
$ workbench neuro simulate --corpus work/synth --out work/sim/sub-sim_eeg.fif --plant envelope
$ workbench neuro simulate --corpus work/synth --out work/bids --subjects 10 --bids-task listen
$ workbench neuro fit --bids work/bids --task listen --corpus work/synth --out work/ws/neuro/group
"""
from __future__ import annotations

import json
import sys

from workbench.validate import non_negative_float, positive_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("neuro", help="relate model features to EEG/MEG/iEEG (TRFs, correlations)",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="neuro_command", metavar="NEURO_COMMAND", required=True)

    f = sub.add_parser("fit", help="TRF layer curve, per-feature correlations, nulls and FDR for one recording")
    f.add_argument("--recording", nargs="+", default=None,
                   help="FIF/EDF/BDF/BrainVision/EEGLAB file, BIDS folder, CND .mat; several = one per subject "
                        "(results under OUT/sub-XX/ and OUT/group/)")
    f.add_argument("--bids", default=None, help="a BIDS dataset (read with mne-bids): every subject of --task")
    f.add_argument("--task", default=None, help="the BIDS task with --bids")
    f.add_argument("--corpus", required=True, help="corpus folder or manifest.jsonl (clip ids = annotations)")
    f.add_argument("--model", default=None, help="model spec, e.g. whisper-tiny.en (omit: acoustic only)")
    f.add_argument("--hooks", nargs="*", default=[], help="hook names or globs")
    f.add_argument("--sae", default=None, help="an SAE directory (or a folder of them)")
    f.add_argument("--cache", default=None, help="an existing activation cache with the hooks")
    f.add_argument("--cache-root", default=None, help="where model features are cached (default WORKSPACE/caches)")
    f.add_argument("--out", required=True, help="run folder, e.g. WORKSPACE/neuro/NAME")
    f.add_argument("--channels", nargs="*", default=None, help="channel names or globs to keep")
    f.add_argument("--sfreq", type=positive_float, default=None, help="resample the recording (Hz) before fitting")
    f.add_argument("--tmin", type=float, default=-0.1)
    f.add_argument("--tmax", type=float, default=0.5)
    f.add_argument("--corr-tmax", type=float, default=0.5, help="per-feature correlation lags 0..this (s)")
    f.add_argument("--folds", type=positive_int, default=5)
    f.add_argument("--n-components", type=positive_int, default=16, help="PCA components per layer")
    f.add_argument("--sae-features", type=positive_int, default=64, help="most active SAE features analysed")
    f.add_argument("--draws", type=int, default=1000, help="circular-shift null draws")
    f.add_argument("--no-delta-r2", action="store_true", help="skip the banded acoustic + layer fits (partition)")
    f.add_argument("--group-perms", type=positive_int, default=10000,
                   help="sign flips of the group test (all 2^subjects when fewer)")
    f.add_argument("--bad-samples", choices=["error", "interpolate", "drop-channel"], default="error",
                   help="NaN/inf samples in a recording: refuse (default), interpolate them, or drop their channels")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--allow-incomplete", action="store_true",
                   help="use a --cache whose build did not finish (recorded in OUT/inputs.json)")
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=run_fit)

    s = sub.add_parser("simulate", help="write a simulated 64-channel EEG FIF for a corpus (planted kernel)")
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True, help="FIF path ending in _eeg.fif or raw.fif (a folder with --subjects)")
    s.add_argument("--subjects", type=positive_int, default=None,
                   help="simulate this many subjects (one planted response, independent noise) into the --out folder")
    s.add_argument("--bids-task", default=None, help="with --subjects: write a BIDS dataset of this task (mne-bids)")
    s.add_argument("--plant", default="envelope", help="'envelope', 'none', or a hook name (needs --model)")
    s.add_argument("--model", default=None)
    s.add_argument("--channels", nargs="*", default=None, help="planted channels (default Cz CPz FCz C1 C2)")
    s.add_argument("--lag", type=non_negative_float, default=0.15, help="kernel peak lag (s)")
    s.add_argument("--r", type=float, default=0.1, help="correlation of a planted channel with its driver")
    s.add_argument("--sfreq", type=positive_float, default=100.0)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run_simulate)

    n = sub.add_parser("naplib", help="export the naplib sample (needs `make neuro-data`) as a corpus + FIF")
    n.add_argument("--out", required=True)
    n.set_defaults(func=run_naplib)


def run_fit(args) -> int:
    from neuro.api import fit
    from workbench.corpus import load_corpus

    from pathlib import Path

    from neuro.api import default_cache_root
    from workbench.atomic import artifact_dir

    cache, about = None, {}
    inputs = {"recording": [str(r) for r in args.recording or []], "bids": args.bids and str(args.bids),
              "corpus": str(args.corpus)}
    if args.cache:
        from workbench.cache import ActivationCache
        from workbench.cache.inputs import cache_inputs, require_complete

        cache = ActivationCache.open(args.cache)
        about = {"cache": str(cache.root), "cache_state": require_complete(cache, args.allow_incomplete)}
        inputs.update(cache_inputs(cache))
    if bool(args.recording) == bool(args.bids):
        raise ValueError("give --recording R1 [R2 ...] or --bids ROOT --task TASK (one of them)")
    cache_root = args.cache_root or default_cache_root(Path(args.out))  # beside OUT, not beside its temporary folder
    kw = dict(model=args.model, hooks=args.hooks, sae=args.sae, cache=cache, cache_root=cache_root,
              channels=args.channels, sfreq=args.sfreq, tmin=args.tmin, tmax=args.tmax, corr_tmax=args.corr_tmax,
              folds=args.folds, n_components=args.n_components, sae_features=args.sae_features, n_draws=args.draws,
              seed=args.seed, bad_samples=args.bad_samples, progress=not args.quiet,
              command="workbench " + " ".join(sys.argv[1:]))
    corpus = load_corpus(args.corpus)
    # OUT is replaced only when the fit finished (locked meanwhile): a failed or refused fit leaves the old one
    with artifact_dir(args.out, inputs, about=about) as tmp:
        if args.bids or len(args.recording) > 1:
            from neuro.multi import fit_group

            g = fit_group(args.recording, corpus, tmp, bids=args.bids, task=args.task, joint=not args.no_delta_r2,
                          group_perms=args.group_perms, **kw)
        else:
            res = fit(args.recording[0], corpus, tmp, delta_r2=not args.no_delta_r2, **kw)
    if args.bids or len(args.recording) > 1:
        cols = ["feature", "r_mean", "r_ci_low", "r_ci_high", "n_significant", "delta_r2_mean"]
        print(g["layers"][cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        m = g["meta"]
        print(f"wrote {args.out} ({len(m['subjects'])} subjects; {m['n_sign_flips']} sign flips, smallest p "
              f"{m['min_p']:.2g}; {m['seconds']} s)")
        return 0
    cols = ["feature", "r_mean", "r_max", "best_channel", "n_significant", "delta_r2_mean"]
    print(res.layers[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {args.out} ({res.meta['data']}, {res.meta['seconds']} s)")
    return 0


def run_simulate(args) -> int:
    from neuro.simulate import DEFAULT_PLANTED, simulate_eeg
    from workbench.corpus import load_corpus

    corpus = load_corpus(args.corpus)
    source = args.plant
    if source not in ("envelope", "none"):
        if not args.model:
            raise ValueError(f"--plant {source!r} is a hook: it needs --model")
        source = _hook_features(args.model, corpus, source, args.sfreq)
    planted = tuple(args.channels) if args.channels else DEFAULT_PLANTED
    if args.subjects:
        from neuro.simulate import simulate_subjects

        paths = simulate_subjects(corpus, args.out, args.subjects, source=source, sfreq=args.sfreq, lag_s=args.lag,
                                  r=args.r, seed=args.seed, planted=planted, bids_task=args.bids_task)
        print(json.dumps({"recordings": [str(p) for p in paths]}))
        return 0
    path = simulate_eeg(corpus, args.out, source=source, sfreq=args.sfreq, lag_s=args.lag, r=args.r, seed=args.seed,
                        planted=planted)
    print(json.dumps({"recording": str(path), "sidecar": str(path.with_suffix(".json"))}))
    return 0


def _hook_features(model_spec: str, corpus, hook: str, sfreq: float) -> dict:
    """``{clip_id: [n, D]}`` of ``hook`` at ``sfreq`` (model run once per clip)."""
    from neuro.acoustic import to_rate
    from neuro.recording import clip_duration
    from neuro.stimulus import AUDIO_SR, clip_audio
    from workbench.models import load

    model = load(model_spec)
    out = {}
    for c in corpus:
        acts = model.run_with_cache(clip_audio(corpus, c.id, model.sample_rate or AUDIO_SR), [hook])[hook]
        out[c.id] = to_rate(acts.float().numpy(), model.frame_rate(hook), sfreq,
                            int(round(clip_duration(corpus, c) * sfreq)), t0=float(model.frame_centres(hook, 1)[0]))
    return out


def run_naplib(args) -> int:
    from neuro.naplib_sample import export_naplib_sample

    corpus_dir, fif = export_naplib_sample(args.out)
    print(json.dumps({"corpus": str(corpus_dir), "recording": str(fif)}))
    return 0
