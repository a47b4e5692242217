"""The demo's steps: corpus -> caches -> SAEs -> probes -> steering -> neuro -> app, on whisper-tiny.en.

Every step is a list of ``workbench`` command lines (the same ones a user would type; run in this
process) plus a completeness check on what they write. The workspace layout is the one of
``../shared/DESIGN.md``::

    corpora/{speech,nonspeech,shared,audiobook,demo,dev,heldout,naplib}   (dev/ and heldout/ keep their halves in parts/)
    corpora/sae_holdout.txt      (the real-speech clips `sae train --holdout-file` keeps out of training)
    caches/{whisper-tiny.en,cochleagram,auristream-tiny}
    saes/whisper-tiny.en/{HOOK}/ and saes/whisper-tiny.en/eval/{HOOK}/
    probes/phones/
    steering/nonspeech/ and steering/nonspeech/eval/
    neuro/{naplib|simulated}/      (the recording it is fitted on: recordings/{naplib|simulated}/)

``corpora/demo`` (espeak speech from several voices, synthetic non-speech, ``../shared/data`` when
present) is what the caches, SAEs, probes and the steering's feature selection see; ``corpora/dev``
is where the steering sweep picks N and strength, and ``corpora/heldout`` (other voices, other seeds,
other clip ids) is only ever used to evaluate the steering.

Example
-------
>>> steps = demo_steps(DemoSettings(quick=True, shared_data=None, app=False))
>>> [s.name for s in steps]
['corpus', 'caches', 'probes', 'sae', 'steering', 'neuro']
>>> steps[0].actions[0].command
'workbench corpus synth --n 16 --speakers 4 --seed 0 --out corpora/speech -q'
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from apps.demo.background import parallel
from apps.demo.runner import Action, Context, Part, Step, cli
from workbench.atomic import read_json

__all__ = ["DemoSettings", "demo_steps", "MODEL", "LAST_HOOK", "MIDDLE_HOOK", "default_shared_data"]

MODEL = "whisper-tiny.en"
LAST_HOOK = "encoder.blocks.3.hook_resid_post"    # tiny.en has 4 encoder blocks: the last one
MIDDLE_HOOK = "encoder.blocks.1.hook_resid_post"  # and the middle one where the phone probes peak
ENCODER_HOOKS = ["encoder.hook_conv_out", "encoder.blocks.*.hook_resid_post"]
SAE_NAME = MODEL


def default_shared_data() -> Path | None:
    """``$WORKBENCH_SHARED_DATA`` or ``../shared/data`` next to the repository, when it has a manifest."""
    env = os.environ.get("WORKBENCH_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return path if (path / "manifest.jsonl").is_file() else None


@dataclass
class DemoSettings:
    """Sizes of the demo. ``quick``: fewer clips and tokens, the same steps."""

    quick: bool = False
    shared_data: Path | None = field(default_factory=default_shared_data)
    app: bool = True
    neuro: str = "auto"  # naplib | simulated | auto (naplib when installed, except in --quick)
    host: str = "127.0.0.1"
    port: int = 8050
    #: replaces entries of :attr:`sizes` (tests run each step on a tiny workspace: tests/test_demo_steps.py)
    size_overrides: dict = field(default_factory=dict)

    @property
    def sizes(self) -> dict:
        unknown = set(self.size_overrides) - set(self._sizes())
        if unknown:
            raise ValueError(f"unknown demo sizes {sorted(unknown)}; the sizes are {sorted(self._sizes())}")
        return {**self._sizes(), **self.size_overrides}

    def _sizes(self) -> dict:
        if self.quick:
            return {"speech": 16, "speakers": 4, "nonspeech": 8, "dev_speech": 4, "dev_nonspeech": 4,
                    "heldout_speech": 6, "heldout_speakers": 3, "heldout_nonspeech": 6, "sae_tokens": 150_000, "sae_batch": 1024,
                    "sae_expansion": 4, "sae_k": 64, "sae_lr": 0.004, "augment_passes": 0,
                    "splice_clips": 4, "eval_frames": 4000, "folds": 3, "probe_frames": 4000,
                    "steer_strengths": "0.5", "steer_fit_clips": 12, "steer_steps": 20,
                    "neuro_draws": 50, "neuro_folds": 3, "neuro_sae_features": 8, "neuro_components": 8,
                    "neuro_stimulus": "heldout",
                    # naplib's audiobook excerpts (62 s each): SAE training / SAE held-out / steering held-out
                    "audiobook_train": 2, "audiobook_heldout": 1, "audiobook_dev": 1, "audiobook_steer": 1,
                    "segment_seconds": 15}
        return {"speech": 32, "speakers": 8, "nonspeech": 24, "dev_speech": 6, "dev_nonspeech": 6,
                "heldout_speech": 16, "heldout_speakers": 4, "heldout_nonspeech": 12, "sae_tokens": 600_000, "sae_batch": 1024,
                # the recipe that keeps the held-out WER at this data size (measured: docs/readme/demo.md): a short run
                # needs a higher learning rate than the long-run default, and k = 64 of 4 x 384 features
                "sae_expansion": 4, "sae_k": 64, "sae_lr": 0.004, "augment_passes": 2,
                # sized so that the steps take ~5 min on 2 idle cores (measured: README)
                "splice_clips": 8, "eval_frames": 10_000, "folds": 3, "probe_frames": 8000,
                "steer_strengths": "0.25,0.5", "steer_fit_clips": 16, "steer_steps": 30,
                # 50 draws suffice: p comes from the null's Gaussian tail (neuro); 2 excerpts of EEG recover the plant
                "neuro_draws": 50, "neuro_folds": 3, "neuro_sae_features": 8, "neuro_components": 8,
                "neuro_stimulus": "heldout",
                "audiobook_train": 6, "audiobook_heldout": 2, "audiobook_dev": 1, "audiobook_steer": 1,
                "segment_seconds": 15}

    @property
    def neuro_data(self) -> str:
        """The recordings the neuro step fits, ``+``-joined: ``simulated`` (a planted layer: the demo checks it
        is recovered) and ``naplib`` (real audiobook stimuli, simulated iEEG; not in ``--quick``)."""
        if self.neuro not in ("auto", "naplib", "simulated"):
            raise ValueError(f"neuro must be auto, naplib or simulated, got {self.neuro!r}")
        if self.neuro == "naplib" and _naplib_file() is None:
            raise FileNotFoundError("--neuro naplib: the naplib sample is not installed (run `make neuro-data`, "
                                    "i.e. pip install --no-deps naplib==2.6.0)")
        if self.neuro == "auto":  # naplib's 10 minutes of audio do not fit the quick demo's 2 minutes
            return "simulated+naplib" if not self.quick and _naplib_file() is not None else "simulated"
        return self.neuro

    @property
    def audiobook(self) -> bool:
        """Real speech (naplib's audiobook excerpts) in the corpora: when the naplib sample is installed."""
        return _naplib_file() is not None

    def to_json(self) -> dict:
        return {"quick": self.quick, "shared_data": str(self.shared_data) if self.shared_data else None,
                "model": MODEL, "neuro": self.neuro_data, "audiobook": self.audiobook, **self.sizes}


# --- helpers -------------------------------------------------------------------------------------
def _has_command(*path: str) -> str | None:
    """None when ``workbench PATH...`` exists, else the reason it does not (a step not built yet)."""
    from workbench.cli import build_parser

    parser = build_parser()
    for i, name in enumerate(path):
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs or name not in subs[0].choices:
            return f"`workbench {' '.join(path[:i + 1])}` is not installed in this checkout"
        parser = subs[0].choices[name]
    return None


def _corpus_ok(rel: str, n: int | None = None):
    def check(ctx: Context) -> bool:
        from workbench.corpus import load_corpus

        corpus = load_corpus(ctx.path(rel))
        return len(corpus) > 0 and (n is None or len(corpus) == n)
    return check


def _all(*checks):
    return lambda ctx: all(c(ctx) for c in checks)


def _cache_ok(rel: str):
    def check(ctx: Context) -> bool:
        from workbench.cache import ActivationCache

        return bool(ActivationCache.open(ctx.path(rel)).meta.get("complete"))
    return check


# --- steps ---------------------------------------------------------------------------------------
def _split(name: str, seed: int, n_speech: int, n_speakers: int, n_nonspeech: int,
           real: str | None = None) -> tuple[list[Action], str]:
    """A corpus of its own voices (``seed``) and clip ids (``NAME_``): its speech and non-speech halves are
    built under ``corpora/NAME/parts/`` (not listed as corpora of their own) and merged into ``corpora/NAME``.
    ``real``: a corpus of real speech that replaces the synthetic speech half."""
    base = f"@corpora/{name}/parts"
    speech = [] if real else [cli("corpus", "synth", "--n", str(n_speech), "--speakers", str(n_speakers), "--seed",
                                  str(seed), "--id-prefix", f"{name}_", "--out", f"{base}/speech", "-q")]
    actions = speech + [cli("corpus", "nonspeech", "--n", str(n_nonspeech), "--seed", str(seed), "--id-prefix",
                            f"{name}_", "--out", f"{base}/nonspeech", "-q"),
                        cli("corpus", "build", real or f"{base}/speech", f"{base}/nonspeech", "--out", f"@corpora/{name}",
                            "-q")]
    return actions, "; ".join(a.command for a in actions)


def py(module: str, *argv: str) -> Action:
    """An action that runs ``python -m MODULE ARGV...`` (its ``main(argv)``) in this process; ``@`` as in :func:`cli`."""
    import importlib

    def run(ctx: Context) -> None:
        importlib.import_module(module).main([str(ctx.root / a[1:]) if a.startswith("@") else a for a in argv])

    return Action(f"python -m {module} " + shlex.join([a[1:] if a.startswith("@") else a for a in argv]), run)


AUDIOBOOK = "corpora/audiobook"
SAE_HOLDOUT = "corpora/sae_holdout.txt"


def _audiobook(s: DemoSettings) -> tuple[list[Action], list[Part]]:
    """naplib's excerpts, split by excerpt (:mod:`apps.demo.audiobook`). The SAE-training excerpts stay whole
    (the SAE needs no word timings); the held-out and steering ones are cut into aligned segments (WER is
    scored per segment), both alignments side by side (pocketsphinx runs on one core)."""
    z = s.sizes
    src = f"@{AUDIOBOOK}/source/corpus"
    actions = [cli("neuro", "naplib", "--out", f"@{AUDIOBOOK}/source"),
               py("apps.demo.audiobook", "split", src, "--train", str(z["audiobook_train"]),
                  "--heldout", str(z["audiobook_heldout"]), "--dev", str(z["audiobook_dev"]),
                  "--steer", str(z["audiobook_steer"])),
               cli("corpus", "build", f"{src}/train.jsonl", "--out", f"@{AUDIOBOOK}/train", "-q"),
               parallel(*(cli("corpus", "segment", f"{src}/{part}.jsonl", "--seconds", str(z["segment_seconds"]),
                              "--align", "--out", f"@{AUDIOBOOK}/{part}", "-q") for part in ("heldout", "dev", "steer")))]
    if z["augment_passes"]:  # more varied frames for the SAE: cuts, speed, level, backgrounds (train excerpts only)
        actions.append(cli("corpus", "augment", f"@{AUDIOBOOK}/train", "--passes", str(z["augment_passes"]),
                           "--out", f"@{AUDIOBOOK}/augmented", "-q"))
    held = [f"@{AUDIOBOOK}/heldout"] + (["@corpora/shared"] if s.shared_data is not None else [])
    actions.append(py("apps.demo.audiobook", "holdout", f"@{SAE_HOLDOUT}", *held))
    what = {"train": "whole 62-s excerpts (cached, SAE training)",
            "heldout": f"cut into {z['segment_seconds']}-s aligned segments (cached, never in SAE training: the "
                       "SAE's FVU and spliced WER)",
            "dev": f"cut into {z['segment_seconds']}-s aligned segments (never cached: the real speech on which the "
                   "steering sweep spends its WER budget)",
            "steer": f"cut into {z['segment_seconds']}-s aligned segments (never cached: the steering evaluation's "
                     "real speech)"}
    if z["augment_passes"]:
        what["augmented"] = f"the training excerpts, {z['augment_passes']} augmented passes (cached, SAE training)"
    parts = [Part("corpora", f"audiobook/{p}", f"{AUDIOBOOK}/{p}", {"what": f"naplib audiobook excerpts, {w}"},
                  "; ".join(a.command for a in actions)) for p, w in what.items()]
    return actions, parts


def corpus_step(s: DemoSettings) -> Step:
    z = s.sizes
    speech = cli("corpus", "synth", "--n", str(z["speech"]), "--speakers", str(z["speakers"]), "--seed", "0",
                 "--out", "@corpora/speech", "-q")
    nonspeech = cli("corpus", "nonspeech", "--n", str(z["nonspeech"]), "--seed", "0", "--out", "@corpora/nonspeech", "-q")
    actions = [speech, nonspeech]
    parts = [Part("corpora", "speech", "corpora/speech", {"what": "espeak-ng speech, exact phone/word timings"},
                  speech.command),
             Part("corpora", "nonspeech", "corpora/nonspeech", {"what": "noise colours, tones, chords, clicks"},
                  nonspeech.command)]
    sources = ["@corpora/speech", "@corpora/nonspeech"]
    if s.shared_data is not None:
        shared = cli("corpus", "build", str(s.shared_data / "manifest.jsonl"), "--out", "@corpora/shared", "-q")
        actions.append(shared)
        sources.append("@corpora/shared")
        parts.append(Part("corpora", "shared", "corpora/shared", {"what": f"real clips from {s.shared_data}"},
                          shared.command))
    if s.audiobook:
        book, book_parts = _audiobook(s)
        actions += book
        parts += book_parts
        sources += [f"@{AUDIOBOOK}/train", f"@{AUDIOBOOK}/heldout"]
        sources += [f"@{AUDIOBOOK}/augmented"] if s.sizes["augment_passes"] else []
    merged = cli("corpus", "build", *sources, "--out", "@corpora/demo", "-q")
    actions.append(merged)
    parts.append(Part("corpora", "demo", "corpora/demo", {"what": "what the caches, SAEs, probes and the steering's "
                                                          "feature selection see"}, merged.command))
    # dev (seed 2) and held out (seed 1): other voices, other non-speech draws, ids of their own. The steering
    # sweep picks its settings on dev; only the steering evaluation reads the held-out clips (real speech of
    # audiobook excerpts never cached, when naplib is installed).
    # the dev speech is real too (an audiobook excerpt of its own): on espeak speech tiny.en's WER is ~0.45 and a
    # 0.5-point budget is noise
    dev, dev_cmd = _split("dev", 2, z["dev_speech"], z["heldout_speakers"], z["dev_nonspeech"],
                          real=f"@{AUDIOBOOK}/dev" if s.audiobook else None)
    held, held_cmd = _split("heldout", 1, z["heldout_speech"], z["heldout_speakers"], z["heldout_nonspeech"],
                            real=f"@{AUDIOBOOK}/steer" if s.audiobook else None)
    actions += dev + held
    parts += [Part("corpora", "dev", "corpora/dev", {"what": "the steering sweep chooses N and strength here"}, dev_cmd),
              Part("corpora", "heldout", "corpora/heldout", {"what": "held-out clips for the steering evaluation"},
                   held_cmd)]
    checks = [_corpus_ok("corpora/speech", z["speech"]), _corpus_ok("corpora/nonspeech", z["nonspeech"]),
              _corpus_ok("corpora/demo"), _corpus_ok("corpora/dev", None if s.audiobook else z["dev_speech"] + z["dev_nonspeech"]),
              _corpus_ok("corpora/heldout", None if s.audiobook else z["heldout_speech"] + z["heldout_nonspeech"])]
    outputs = [f"{p.path}/manifest.jsonl" for p in parts] + ([SAE_HOLDOUT] if s.audiobook else [])
    return Step("corpus", "corpora: espeak speech (several voices), synthetic non-speech, "
                + ("naplib's audiobook excerpts (real speech, split by excerpt), " if s.audiobook else "")
                + ("../shared/data, " if s.shared_data else "") + "dev and held-out clips",
                actions=actions, outputs=outputs, parts=parts, check=_all(*checks), removes=["corpora"])


#: the WavCoch-sized offline cochlear codebook (LFQ, 8192 codes: workbench.models.cochlear_lfq), cached as auristream-tiny
TOKENS_SPEC = "auristream-tiny?codebook=speech-8192"


def caches_step(s: DemoSettings) -> Step:
    specs = [(MODEL, MODEL, ENCODER_HOOKS), ("cochleagram", "cochleagram", ["cochleagram.hook_out"]),
             ("auristream-tiny", TOKENS_SPEC, ["tokens.hook_ids", "lm.blocks.*.hook_resid_post"])]
    each = [cli("cache", "--model", spec, "--corpus", "@corpora/demo", "--hooks", *hooks, "--out", f"@caches/{name}",
                "--quiet") for name, spec, hooks in specs]
    # Whisper's cache keeps both cores busy; the cochleagram and token caches (one core each) run side by side
    actions = [each[0], parallel(*each[1:])]
    return Step(
        "caches", f"activation caches: {MODEL} (conv stem + every encoder block), cochleagram, offline cochlear tokens "
                  "(8192-code LFQ codebook)",
        actions=actions, outputs=[f"caches/{m}/cache.json" for m, _, _ in specs],
        parts=[Part("caches", m, f"caches/{m}", command=a.command) for (m, _, _), a in zip(specs, each)],
        needs=["corpus"], check=_all(*(_cache_ok(f"caches/{m}") for m, _, _ in specs)),
    )


def _sae_train(argv: list[str], out_rel: str) -> Action:
    """``workbench sae train``; a rerun after a kill continues the checkpoint (adds ``--resume``)."""
    base = cli(*argv)

    def run(ctx: Context) -> None:
        if (ctx.path(out_rel) / "checkpoint.pt").exists():
            cli(*argv, "--resume").run(ctx)
        else:
            base.run(ctx)

    return Action(base.command, run)


def sae_step(s: DemoSettings) -> Step:
    z = s.sizes
    out = f"saes/{SAE_NAME}"
    hooks = [LAST_HOOK, MIDDLE_HOOK]
    train = ["sae", "train", "--cache", f"@caches/{MODEL}", "--hook", LAST_HOOK, "--hook", MIDDLE_HOOK,
             "--expansion", str(z["sae_expansion"]), "--k", str(z["sae_k"]), "--lr", str(z["sae_lr"]),
             "--tokens", str(z["sae_tokens"]), "--batch-size", str(z["sae_batch"]),
             *(["--holdout-file", f"@{SAE_HOLDOUT}"] if s.audiobook else ["--holdout-clips", "0.25", "--holdout-by", "speaker"]),
             "--out", f"@{out}", "--quiet"]

    def check(ctx: Context) -> bool:
        from workbench.features import FeatureDictionary

        return all(FeatureDictionary.load(ctx.path(f"{out}/{h}")).hook_name == h for h in hooks)

    return Step(
        "sae", f"Batch-Top-K SAEs on {LAST_HOOK} and {MIDDLE_HOOK} + evaluation (FVU, L0, spliced WER, "
               "per-feature summaries for the Features page)",
        actions=[_sae_train(train, out),
                 cli("sae", "eval", "--sae", f"@{out}", "--cache", f"@caches/{MODEL}", "--model", MODEL,
                     "--max-frames", str(z["eval_frames"]), "--splice-clips", str(z["splice_clips"]),
                     # the erasure analyses (two thirds of the eval's time) feed no demo figure or page
                     "--erasure-probe", "none", "--out", f"@{out}/eval", "--quiet")],
        outputs=[p for h in hooks for p in (f"{out}/{h}/cfg.json", f"{out}/{h}/sae_weights.safetensors",
                                            f"{out}/eval/{h}/eval.json", f"{out}/eval/{h}/features.parquet")],
        parts=[Part("saes", f"{SAE_NAME}/{h}", f"{out}/{h}", {"eval": f"{out}/eval/{h}"}) for h in hooks],
        needs=["caches"], check=check,
    )


def probes_step(s: DemoSettings) -> Step:
    # ../shared/data's clips have no speaker label, so with them the folds keep clips (not speakers) apart
    split = "clip" if s.shared_data is not None else "speaker"
    return Step(
        "probes", f"phone probes across layers ({split}-disjoint folds, majority / shuffled / control baselines)",
        actions=[cli("probe", "--cache", f"@caches/{MODEL}", "--target", "phones", "--split", split,
                     "--folds", str(s.sizes["folds"]), "--max-frames", str(s.sizes["probe_frames"]),
                     "--out", "@probes/phones")],
        outputs=["probes/phones/summary.json", "probes/phones/summary.csv"],
        parts=[Part("probes", "phones", "probes/phones")],
        needs=["caches"],
        background=True,  # L-BFGS runs on one thread: the probes share the machine with the SAE and steering steps
    )


def steering_step(s: DemoSettings) -> Step:
    out = "steering/nonspeech"
    return Step(
        "steering", f"steering {MODEL} away from transcripts of non-speech: an optimised steering vector at {LAST_HOOK} "
                    "(trained on the cache's clips, its strength chosen on the dev clips), evaluated on held-out clips "
                    "against Whisper's no-speech gate and Silero VAD",
        actions=[cli("steer", "fit", "--cache", f"@caches/{MODEL}", "--sae", f"@saes/{SAE_NAME}/{LAST_HOOK}",
                     "--concept", "nonspeech", "--corpus", "@corpora/dev", "--model", MODEL,
                     # the optimised steering vector: the best method of the steering study (docs/readme/steering.md);
                     # no SAE-feature edit lowered the dev hallucinations within the WER budget
                     "--method", "vector", "--strengths", s.sizes["steer_strengths"],
                     "--max-fit-clips", str(s.sizes["steer_fit_clips"]), "--vector-steps", str(s.sizes["steer_steps"]),
                     "--vector-kl", "4", "--out", f"@{out}", "--quiet"),
                 cli("steer", "eval", "--steering", f"@{out}", "--corpus", "@corpora/heldout", "--out", f"@{out}/eval",
                     "--quiet")],
        outputs=[f"{out}/steering.json", f"{out}/sweep.csv", f"{out}/eval/eval.json"],
        parts=[Part("steering", "nonspeech", out)],
        needs=["sae", "corpus"],
        available=lambda: _has_command("steer", "fit") or _has_command("steer", "eval"),
    )


def _naplib_file() -> Path | None:
    try:
        from neuro.naplib_sample import naplib_sample_path

        path = Path(naplib_sample_path())
    except Exception:  # naplib not installed (its wheel is optional: `make neuro-data`)
        return None
    return path if path.is_file() else None


def neuro_step(s: DemoSettings) -> Step:
    """A simulated 64-channel EEG of the demo's continuous real speech with encoder block 1 planted at 150 ms
    (the demo checks that it is recovered) and, in the full demo, naplib's sample (real audiobook audio,
    simulated iEEG: the layer curve with its statistics)."""
    z = s.sizes
    common = ["--model", MODEL, "--hooks", "encoder.blocks.*.hook_resid_post", "--sae",
              f"@saes/{SAE_NAME}/{LAST_HOOK}", "--sae-features", str(z["neuro_sae_features"]),
              "--n-components", str(z["neuro_components"]), "--draws", str(z["neuro_draws"]),
              "--folds", str(z["neuro_folds"]), "--no-delta-r2", "--quiet"]  # delta-R^2 fits: minutes more
    actions, parts, removes, names, whats = [], [], [], [], []
    if "simulated" in s.neuro_data:
        # the stimulus: continuous real speech already cached, else espeak clips
        # (the SAE's held-out excerpts, cut into segments: folds need 3 or more trials; about 1 min of EEG in
        # --quick, 2 in the full demo)
        speech = f"{AUDIOBOOK}/{z['neuro_stimulus']}" if s.audiobook else "corpora/speech"
        what = f"a simulated 64-channel EEG of {speech} ({MIDDLE_HOOK} planted at 150 ms, r = 0.3, 5 channels)"
        actions += [cli("neuro", "simulate", "--corpus", f"@{speech}", "--out", "@recordings/simulated/sub-sim_eeg.fif",
                        "--plant", MIDDLE_HOOK, "--model", MODEL, "--r", "0.3"),
                    cli("neuro", "fit", "--recording", "@recordings/simulated/sub-sim_eeg.fif", "--corpus",
                        f"@{speech}", "--cache", f"@caches/{MODEL}", *common, "--out", "@neuro/simulated")]
        parts.append(Part("neuro", "simulated", "neuro/simulated", {"data": what}))
        removes += ["recordings/simulated", "neuro/simulated"]
        names.append("simulated")
        whats.append(what)
    if "naplib" in s.neuro_data:
        what = "naplib's speech-task sample (10 audiobook excerpts, 10 simulated iEEG channels)"
        actions += [cli("neuro", "naplib", "--out", "@recordings/naplib"),
                    cli("corpus", "build", "@recordings/naplib/corpus", "--out", "@corpora/naplib", "-q"),
                    cli("neuro", "fit", "--recording", "@recordings/naplib/sub-naplib_ieeg.fif", "--corpus",
                        "@corpora/naplib", *common, "--out", "@neuro/naplib")]
        parts += [Part("corpora", "naplib", "corpora/naplib"), Part("neuro", "naplib", "neuro/naplib", {"data": what})]
        removes += ["recordings/naplib", "corpora/naplib", "neuro/naplib"]
        names.append("naplib")
        whats.append(what)
    return Step(
        "neuro", f"encoding-model layer curves (TRF, circular-shift nulls, FDR) on {' and on '.join(whats)}",
        actions=actions, outputs=[f"neuro/{n}/{f}" for n in names for f in ("summary.csv", "layers.csv", "neuro.json")],
        parts=parts, removes=removes, needs=["sae", "corpus"], available=lambda: _has_command("neuro", "fit"),
        # neuro.json is written again, with the run's seconds, once everything else is on disk
        check=lambda ctx: all(read_json(ctx.path(f"neuro/{n}/neuro.json")).get("seconds") is not None for n in names),
    )


def app_step(s: DemoSettings) -> Step:
    return Step(
        "app", f"the workbench app on this workspace at http://{s.host}:{s.port}/ (Ctrl-C stops it)",
        actions=[cli("app", "@.", "--host", s.host, "--port", str(s.port))],
        blocking=True,
        available=lambda: _has_command("app"),
    )


def demo_steps(settings: DemoSettings) -> list[Step]:
    """The demo's steps in order (the app last, unless ``settings.app`` is False)."""
    # the probes run in the background (one core) from right after the caches, beside the SAE and steering steps
    steps = [corpus_step(settings), caches_step(settings), probes_step(settings), sae_step(settings),
             steering_step(settings), neuro_step(settings)]
    return steps + [app_step(settings)] if settings.app else steps
