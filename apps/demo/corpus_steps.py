"""The demo's corpus steps: the corpora every later step reads (``corpus``) and the steering's dev and
held-out clips (``evalsets``). Layout and sizes: :mod:`apps.demo.steps`.

Example
-------
>>> from apps.demo.steps import DemoSettings
>>> step = evalsets_step(DemoSettings(quick=True, shared_data=None, app=False))
>>> step.name, step.needs, step.background
('evalsets', ['corpus'], False)
"""
from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from apps.demo.background import parallel
from apps.demo.runner import Action, Context, Part, Step, _resolve, cli

if TYPE_CHECKING:
    from apps.demo.steps import DemoSettings

__all__ = ["AUDIOBOOK", "SAE_HOLDOUT", "corpus_step", "evalsets_step", "py"]


def _corpus_ok(rel: str, n: int | None = None):
    def check(ctx: Context) -> bool:
        from workbench.corpus import load_corpus

        corpus = load_corpus(ctx.path(rel))
        return len(corpus) > 0 and (n is None or len(corpus) == n)
    return check


def _all(*checks):
    return lambda ctx: all(c(ctx) for c in checks)


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
        importlib.import_module(module).main([_resolve(ctx, a) for a in argv])

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
               # every part that is scored by its words, aligned side by side (pocketsphinx runs on one core)
               parallel(*(_segment(s, part) for part in ("heldout", "dev", "steer")))]
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


def _segment(s: DemoSettings, part: str) -> Action:
    """Cut the excerpts of ``part`` (written by ``audiobook split``) into aligned segments (pocketsphinx, one core)."""
    return cli("corpus", "segment", f"@{AUDIOBOOK}/source/corpus/{part}.jsonl", "--seconds",
               str(s.sizes["segment_seconds"]), "--align", "--out", f"@{AUDIOBOOK}/{part}", "-q")


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
    checks = [_corpus_ok("corpora/speech", z["speech"]), _corpus_ok("corpora/nonspeech", z["nonspeech"]),
              _corpus_ok("corpora/demo")]
    outputs = [f"{p.path}/manifest.jsonl" for p in parts] + ([SAE_HOLDOUT] if s.audiobook else [])
    what = ["espeak speech (several voices)", "synthetic non-speech"]
    what += ["naplib's audiobook excerpts (real speech, split by excerpt)"] if s.audiobook else []
    what += ["../shared/data"] if s.shared_data else []
    return Step("corpus", "corpora: " + ", ".join(what),
                actions=actions, outputs=outputs, parts=parts, check=_all(*checks), removes=["corpora"])


def evalsets_step(s: DemoSettings) -> Step:
    """The steering's dev and held-out clips: dev (seed 2) and held out (seed 1) have other voices, other
    non-speech draws and ids of their own. The sweep picks its settings on dev; only the steering evaluation
    reads the held-out clips. With naplib installed their speech is real: an audiobook excerpt each, aligned
    in the corpus step and never cached (on espeak speech tiny.en's WER is ~0.45 and a 0.5-point budget is
    noise). A step of its own, run in this process: a background child would contend with the caches'
    two torch threads (measured: the Whisper cache took twice as long beside it)."""
    z = s.sizes
    dev, dev_cmd = _split("dev", 2, z["dev_speech"], z["heldout_speakers"], z["dev_nonspeech"],
                          real=f"@{AUDIOBOOK}/dev" if s.audiobook else None)
    held, held_cmd = _split("heldout", 1, z["heldout_speech"], z["heldout_speakers"], z["heldout_nonspeech"],
                            real=f"@{AUDIOBOOK}/steer" if s.audiobook else None)
    parts = [Part("corpora", "dev", "corpora/dev", {"what": "the steering sweep chooses N and strength here"}, dev_cmd),
             Part("corpora", "heldout", "corpora/heldout", {"what": "held-out clips for the steering evaluation"},
                  held_cmd)]
    checks = [_corpus_ok("corpora/dev", None if s.audiobook else z["dev_speech"] + z["dev_nonspeech"]),
              _corpus_ok("corpora/heldout", None if s.audiobook else z["heldout_speech"] + z["heldout_nonspeech"])]
    return Step("evalsets", "the steering's dev and held-out clips" + (" (real speech: audiobook excerpts of their own)"
                                                                       if s.audiobook else ""),
                actions=dev + held, outputs=[f"{p.path}/manifest.jsonl" for p in parts], parts=parts, needs=["corpus"],
                check=_all(*checks), removes=["corpora/dev", "corpora/heldout"])
