"""Held-out evaluation of a steering artifact against the baselines a user would reach for first.

On every clip (in one run, same clips for all): plain greedy decoding, Whisper's no-speech gate,
Silero VAD gating, the steering, and the steering combined with each gate; further artifacts
(e.g. the direction baseline) are added with ``also``. Clips of the artifact's fit or dev split
(by id or by source group) are refused: they are dropped with a warning and counted.

Writes ``DIR/eval.json``::

    {"steering": ..., "model": ..., "corpus": ..., "conditions": [...],
     "baseline": {"hallucination_rate", "hallucination_ci", "wer", "wer_ci", ...},
     "steered": {...}, "no_speech_gate": {...}, "vad_gate": {...},
     "steered+no_speech_gate": {...}, "steered+vad_gate": {...},
     "steered[NAME]": {...}, "steered[NAME]+vad_gate": {...}, ...       # one set per ``also`` artifact
     "clips": [{"id", "domain", "reference", "baseline", "steered", <every other condition>}],
     "skipped": [{"id", "error"}], "excluded": [ids used in fit/dev]}

and ``DIR/clips.csv`` (the per-clip transcripts).

Example
-------
>>> from workbench.steering import Steering                                     # doctest: +SKIP
>>> res = evaluate(Steering.load("work/steer/steering/tiny_sae"), "work/steer/corpora/eval",
...                out="work/steer/steering/tiny_sae/eval")                     # doctest: +SKIP
>>> res["steered"]["hallucination_rate"], res["baseline"]["hallucination_rate"]  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sae.steer.data import clip_group, is_speech
from sae.steer.gates import SileroVAD, gated_text, plain_text
from sae.steer.metrics import summarize
from workbench.atomic import write_json, write_text

log = logging.getLogger(__name__)


def load_clips(corpus, sample_rate: int, verbose: bool = True) -> tuple[list, list[np.ndarray], list[dict]]:
    """``(clips, audio, skipped)``: a clip that cannot be read is reported by name and skipped."""
    from workbench.audio import load_audio

    clips, audio, skipped = [], [], []
    for c in tqdm(list(corpus), desc="load clips", disable=not verbose, leave=False):
        try:
            audio.append(load_audio(corpus.audio_path(c), sr=sample_rate))
            clips.append(c)
        except Exception as e:  # noqa: BLE001 - report the clip, keep the run
            log.warning("skipping clip %s (%s): %s", c.id, corpus.audio_path(c), e)
            skipped.append({"id": c.id, "error": str(e)})
    return clips, audio, skipped


def used_clips(steering) -> tuple[set[str], set[str]]:
    """(clip ids, groups) the artifact was fitted or swept on."""
    ids, groups = set(), set()
    for part in (steering.selection, steering.sweep):
        ids.update(part.get("clips", []))
        groups.update(part.get("groups", []))
    return ids, groups


def _transcripts(model, audio: list[np.ndarray], steering, speech: list | None) -> dict[str, list[str]]:
    """Texts of a batch of clips under ``steering`` (None = plain): decoding, no-speech gate and, when
    ``speech`` (VAD output per clip) is given, the VAD gate."""
    with steering.applied(model) if steering is not None else contextlib.nullcontext():
        windows = model.transcribe_scored(audio)
        out = {"": [plain_text(w) for w in windows], "+no_speech_gate": [gated_text(w) for w in windows]}
        if speech is not None:
            found = [i for i, x in enumerate(speech) if x is not None]
            texts = model.transcribe([speech[i] for i in found]) if found else []
            vad = [""] * len(audio)
            for i, t in zip(found, texts):
                vad[i] = t
            out["+vad_gate"] = vad
    return out


def evaluate(steering, corpus, model=None, out: str | Path | None = None, also: Sequence = (),
             vad: bool = True, n_boot: int = 2000, seed: int = 0, max_clips: int | None = None,
             verbose: bool = True) -> dict:
    """Evaluate ``steering`` (a :class:`~workbench.steering.Steering` or its directory) on ``corpus``."""
    from workbench.corpus import load_corpus
    from workbench.models import load
    from workbench.steering import Steering

    steering = steering if isinstance(steering, Steering) else Steering.load(steering)
    others = [s if isinstance(s, Steering) else Steering.load(s) for s in also]
    corpus_path = str(corpus) if not hasattr(corpus, "clips") else str(corpus.root)
    corpus = load_corpus(corpus) if not hasattr(corpus, "clips") else corpus
    model = model if model is not None else load(steering.model)
    for s in [steering, *others]:
        s.check_model(model)
    ids, groups = set(), set()
    for s in [steering, *others]:
        i, g = used_clips(s)
        ids |= i
        groups |= g
    from workbench.corpus import Corpus

    keep = [c for c in corpus if c.id not in ids and clip_group(c) not in groups]
    excluded = [c.id for c in corpus if c not in keep]
    if excluded:
        log.warning("%d clip(s) of %s were used to fit or tune the steering and are left out: %s",
                    len(excluded), corpus_path, excluded[:5])
    if max_clips and len(keep) > max_clips:  # a seeded random subset (speech and non-speech in proportion)
        pick = np.random.default_rng(seed).permutation(len(keep))[:max_clips]
        keep = [keep[i] for i in sorted(pick)]
    if not keep:
        raise ValueError(f"{corpus_path}: no clip left that the steering was not fitted or tuned on")
    clips, audio, skipped = load_clips(Corpus(keep, root=corpus.root), model.sample_rate, verbose)
    named = [("steered", steering)] + [(f"steered[{Path(s.path or f'also{i}').name}]", s) for i, s in enumerate(others)]
    gate = SileroVAD(sample_rate=model.sample_rate) if vad else None
    rows = [{"id": c.id, "domain": c.domain, "reference": c.transcript if is_speech(c) else None} for c in clips]
    chunk = max(1, getattr(model, "batch_size", 8))
    for start in tqdm(range(0, len(clips), chunk), desc="evaluate", unit=f"x{chunk} clips", disable=not verbose):
        part = audio[start : start + chunk]
        speech = [gate.speech_audio(x) for x in part] if gate is not None else None
        plain = None
        for prefix, st in [("", None), *named]:
            if st is None or not st.is_identity:
                got = _transcripts(model, part, st, speech)
            else:  # N = 0 / strength 0 attaches nothing: its texts are plain decoding's (bit-identical, tested)
                got = plain
            plain = got if st is None else plain
            for suffix, texts in got.items():
                name = (prefix + suffix) if prefix else ({"": "baseline"}.get(suffix) or suffix.lstrip("+"))
                for row, text in zip(rows[start : start + chunk], texts):
                    row[name] = text
    for row, c in zip(rows, clips):
        row["condition"] = clip_condition(c)
    conditions = [k for k in rows[0] if k not in ("id", "domain", "reference", "condition")]
    texts = {k: [r[k] for r in rows] for k in conditions}
    refs, nonspeech = [r["reference"] for r in rows], [not is_speech(c) for c in clips]
    metrics = summarize(texts, refs, nonspeech, n_boot=n_boot, seed=seed)
    by_condition = {}
    for cond in sorted({r["condition"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["condition"] == cond]
        by_condition[cond] = summarize({k: [v[i] for i in idx] for k, v in texts.items()}, [refs[i] for i in idx],
                                       [nonspeech[i] for i in idx], n_boot=n_boot, seed=seed)
    methods = {"baseline": {"method": "plain decoding", "gate": "none", "path": None}}
    for name, st in named:
        methods[name] = {"method": st.method, "edit": st.edit, "strength": st.strength, "n_features": st.n_features,
                         "features": st.chosen, "gate": st.gate, "path": st.path, "describe": st.describe(),
                         "selector": st.selection.get("selector")}
    result = {"steering": steering.path, "also": [s.path for s in others], "model": model.spec,
              "corpus": corpus_path, "conditions": conditions, **metrics, "clips": rows,
              "skipped": skipped, "excluded": excluded, "n_boot": n_boot,
              "chosen": {"method": steering.method, "edit": steering.edit, "strength": steering.strength,
                         "n_features": steering.n_features, "gate": steering.gate},
              "methods": methods, "by_condition": by_condition,
              "rows": long_rows(metrics, by_condition, conditions, methods)}
    if out is not None:
        out = Path(out)
        write_json(out / "eval.json", result, indent=1)
        write_text(out / "clips.csv", pd.DataFrame(rows).to_csv(index=False))
    return result


def clip_condition(clip) -> str:
    """The condition a clip is reported under: its ``condition`` (e.g. ``whispered``), else
    ``speech`` / ``nonspeech``."""
    return str(clip.extra.get("condition") or ("speech" if is_speech(clip) else "nonspeech"))


def long_rows(metrics: dict, by_condition: dict, conditions: list[str], methods: dict) -> list[dict]:
    """One row per (evaluation condition, clip condition): ``method`` (the artifact's name in
    ``methods``), ``gate`` (``none``, ``no_speech_gate``, ``vad_gate``), ``clips`` (``all`` or a clip
    condition) and its figures; what the app's Pareto plot reads."""
    out = []
    for name in conditions:
        method, _, gate = name.partition("+")
        if method in ("no_speech_gate", "vad_gate"):
            method, gate = "baseline", method
        for clips, m in [("all", metrics[name]), *((c, v[name]) for c, v in by_condition.items())]:
            out.append({"condition": name, "method": method, "gate": gate or "none", "clips": clips,
                        **{k: m.get(k) for k in ("hallucination_rate", "hallucination_ci", "hallucination_drop",
                                                 "hallucination_drop_ci", "wer", "wer_ci", "wer_change",
                                                 "wer_change_ci", "n_nonspeech", "n_speech", "reference_words")}})
    return out


def table(result: dict) -> pd.DataFrame:
    """One row per condition: hallucination rate and WER with their intervals (for printing)."""
    rows = []
    for name in result["conditions"]:
        m = result[name]
        rows.append({"condition": name, "hallucination_rate": m["hallucination_rate"],
                     "hall_ci": m["hallucination_ci"], "wer": m["wer"], "wer_ci": m["wer_ci"],
                     "hall_drop": m.get("hallucination_drop"), "wer_change": m.get("wer_change")})
    return pd.DataFrame(rows)
