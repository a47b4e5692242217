"""The demo's steps: corpus -> caches -> SAEs -> probes -> steering -> neuro -> app, on whisper-tiny.en.

Every step is a list of ``workbench`` command lines (the same ones a user would type; run in this
process, or in child processes for the background steps: the steering's dev/held-out clips
(``evalsets``) and the probes) plus a completeness check on what they write. The corpus steps are in
:mod:`apps.demo.corpus_steps`. The workspace layout is the one of
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
['corpus', 'evalsets', 'caches', 'probes', 'sae', 'neuro', 'steering']
>>> steps[0].actions[0].command
'workbench corpus synth --n 12 --speakers 4 --seed 0 --out corpora/speech -q'
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from apps.demo.background import parallel, sequence
from apps.demo.corpus_steps import AUDIOBOOK, SAE_HOLDOUT, _all, corpus_step, evalsets_step
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
            return {"speech": 12, "speakers": 4, "nonspeech": 6, "dev_speech": 4, "dev_nonspeech": 4,
                    "heldout_speech": 6, "heldout_speakers": 3, "heldout_nonspeech": 4, "sae_tokens": 150_000, "sae_batch": 1024,
                    "sae_expansion": 4, "sae_k": 64, "sae_lr": 0.004, "augment_passes": 0,
                    # one SAE (the last block: the one the checks and the neuro step use), half the probes' frames
                    "sae_hooks": 1, "splice_clips": 2, "eval_frames": 4000, "folds": 3, "probe_frames": 2000,
                    "probe_C": 1.0,  # a fixed L2 strength: no inner validation path (a third of the probes' work)
                    # the strength the full demo's sweep chooses, checked on 3 dev excerpts (~580 words: with one,
                    # 177 words, the 0.5-point budget was less than a word and no edit passed; measured: docs/readme/demo.md)
                    "steer_strengths": "0.5", "steer_fit_clips": 12, "steer_steps": 12,
                    "neuro_draws": 50, "neuro_folds": 3, "neuro_sae_features": 8, "neuro_components": 8,
                    "neuro_stimulus": "heldout",
                    # naplib's audiobook excerpts (62 s each): SAE training / SAE held-out / steering dev / held-out
                    "audiobook_train": 2, "audiobook_heldout": 1, "audiobook_dev": 3, "audiobook_steer": 1,
                    "segment_seconds": 15}
        return {"speech": 32, "speakers": 8, "nonspeech": 24, "dev_speech": 6, "dev_nonspeech": 6,
                "heldout_speech": 16, "heldout_speakers": 4, "heldout_nonspeech": 12, "sae_tokens": 600_000, "sae_batch": 1024,
                # the recipe that keeps the held-out WER at this data size (measured: docs/readme/demo.md): a short run
                # needs a higher learning rate than the long-run default, and k = 64 of 4 x 384 features
                "sae_expansion": 4, "sae_k": 64, "sae_lr": 0.004, "augment_passes": 2,
                # sized so that the steps take ~5 min on 2 idle cores (measured: README)
                "sae_hooks": 2, "splice_clips": 8, "eval_frames": 10_000, "folds": 3, "probe_frames": 8000, "probe_C": None,
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


def _cache_ok(rel: str):
    def check(ctx: Context) -> bool:
        from workbench.cache import ActivationCache

        return bool(ActivationCache.open(ctx.path(rel)).meta.get("complete"))
    return check


# --- steps ---------------------------------------------------------------------------------------
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
    hooks = [LAST_HOOK, MIDDLE_HOOK][: z["sae_hooks"]]
    train = ["sae", "train", "--cache", f"@caches/{MODEL}", *[a for h in hooks for a in ("--hook", h)],
             "--expansion", str(z["sae_expansion"]), "--k", str(z["sae_k"]), "--lr", str(z["sae_lr"]),
             "--tokens", str(z["sae_tokens"]), "--batch-size", str(z["sae_batch"]),
             *(["--holdout-file", f"@{SAE_HOLDOUT}"] if s.audiobook else ["--holdout-clips", "0.25", "--holdout-by", "speaker"]),
             "--out", f"@{out}", "--quiet"]

    def check(ctx: Context) -> bool:
        from workbench.features import FeatureDictionary

        return all(FeatureDictionary.load(ctx.path(f"{out}/{h}")).hook_name == h for h in hooks)

    return Step(
        "sae", f"Batch-Top-K SAEs on {' and '.join(hooks)} + evaluation (FVU, L0, spliced WER, "
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
                     *(["--C", str(s.sizes["probe_C"])] if s.sizes["probe_C"] else []),
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
        needs=["sae", "corpus", "evalsets"],
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
        # in the background beside the steering step (Whisper's greedy decoding leaves a core idle much of the
        # time), its commands in one child process (imports and the model load paid once)
        actions=[sequence(*actions)], background=True, outputs=[f"neuro/{n}/{f}" for n in names for f in ("summary.csv", "layers.csv", "neuro.json")],
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
    # the neuro step runs in the background beside the steering step (both need only the SAE)
    steps = [corpus_step(settings), evalsets_step(settings), caches_step(settings), probes_step(settings),
             sae_step(settings), neuro_step(settings), steering_step(settings)]
    return steps + [app_step(settings)] if settings.app else steps
