"""Noise conditions end to end: enhance, score, transcribe, and compare representations layer by layer.

``workbench conditions --corpus MIXED --model whisper-tiny.en --enhancers nsnet2 gtcrn --out DIR``
reads a corpus made by ``workbench corpus mix`` (clean clips plus noisy versions with ``condition``,
``clean_id`` and ``clean_path``) and writes:

- ``enhanced/<enhancer>/<clip>.flac``: each noisy clip through each enhancer (at the mixture's rate);
- ``quality.csv``: per noisy clip and enhancer, SI-SNR of the noisy and the enhanced signal against the
  clean reference, and the improvement; ``quality_summary.csv``: means per condition and enhancer;
- ``wer.csv``: the ASR model's WER per condition (clean, each noisy condition, each ``COND+ENHANCER``);
- ``transcripts.csv``: every transcribed clip's text (``clip, condition, clean_id, text``; the app's clip view);
- ``hallucination.csv`` (with ``--noise-only CORPUS``): share of noise clips transcribed as words,
  plain and after each enhancer;
- ``similarity.csv``: linear CKA per layer between clean and each condition (:mod:`probes.conditions`);
- ``robustness.csv``: phone-probe accuracy per layer, trained on clean utterances, tested on held-out
  utterances in every condition;
- ``conditions.html``: the CKA and robustness curves; ``summary.json``: the headline figures.

Example
-------
>>> ev = evaluate_conditions("work/noisy", "whisper-tiny.en", ["nsnet2"], out="work/conditions")  # doctest: +SKIP
>>> ev["quality"].groupby("enhancer").improvement_db.mean()                                     # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from probes.conditions import activations_by_condition, robustness_by_layer, similarity_by_layer
from workbench.atomic import write_json, write_text
from workbench.audio import load_audio, resample, save_audio
from workbench.corpus import load_corpus
from workbench.corpus.augment import si_snr
from workbench.corpus.types import Clip, Corpus
from workbench.text import normalize_text, word_errors

logger = logging.getLogger(__name__)

__all__ = ["evaluate_conditions", "enhance_corpus"]


def enhance_corpus(corpus: Corpus, enhancer, out: Path, verbose: bool = True) -> list[Clip]:
    """Enhanced copies of every non-clean clip (written once under ``out``; a rerun reuses them), as
    clips of condition ``COND+ENHANCER`` that keep the clean clip's labels."""
    from tqdm.auto import tqdm

    clips = []
    for clip in tqdm([c for c in corpus if c.extra.get("condition") != "clean"], desc=f"enhance ({enhancer.name})",
                     unit="clip", disable=not verbose):
        target = out / f"{clip.id}.flac"
        if not target.is_file():
            audio = load_audio(corpus.audio_path(clip), sr=enhancer.sample_rate)
            save_audio(target, resample(enhancer.enhance(audio), enhancer.sample_rate, 16000), 16000)
        clips.append(Clip(f"{clip.id}+{enhancer.name}", str(target.resolve()), clip.domain, clip.speaker,
                          clip.transcript, clip.tiers, clip.duration_s,
                          {**clip.extra, "condition": f"{clip.extra['condition']}+{enhancer.name}",
                           "enhancer": enhancer.name, "noisy_id": clip.id}))
    return clips


def _quality(corpus: Corpus, enhanced: dict[str, list[Clip]]) -> pd.DataFrame:
    rows = []
    for name, clips in enhanced.items():
        for clip in clips:
            noisy = corpus[[c.id for c in corpus].index(clip.extra["noisy_id"])]
            clean = load_audio(corpus.root / clip.extra["clean_path"], sr=16000)
            before = si_snr(clean, load_audio(corpus.audio_path(noisy), sr=16000))
            after = si_snr(clean, load_audio(clip.path, sr=16000))
            rows.append({"clip": noisy.id, "condition": noisy.extra["condition"], "enhancer": name,
                         "snr_db": noisy.extra.get("snr_db"), "noise_domain": noisy.extra.get("noise_domain"),
                         "si_snr_noisy_db": before, "si_snr_enhanced_db": after, "improvement_db": after - before})
    return pd.DataFrame(rows)


def _wer(model, clips: Sequence[Clip], audio_of) -> tuple[pd.DataFrame, pd.DataFrame]:
    """WER per condition and every clip's transcript (``clip, condition, clean_id, text``)."""
    from tqdm.auto import tqdm

    per, said = {}, []
    for clip in tqdm(clips, desc="transcribe", unit="clip"):
        if not clip.transcript:
            continue
        text = model.transcribe(audio_of(clip))
        said.append({"clip": clip.id, "condition": clip.extra["condition"], "clean_id": clip.extra.get("clean_id"),
                     "text": text})
        e, n = word_errors(clip.transcript, text)
        acc = per.setdefault(clip.extra["condition"], [0, 0, 0])
        acc[0], acc[1], acc[2] = acc[0] + e, acc[1] + n, acc[2] + 1
    wer = pd.DataFrame([{"condition": k, "wer": e / max(n, 1), "errors": e, "words": n, "clips": c}
                        for k, (e, n, c) in sorted(per.items())])
    return wer, pd.DataFrame(said, columns=["clip", "condition", "clean_id", "text"])


def _phone_labels(model, clips: Sequence[Clip], hook: str, audio_of) -> dict[str, np.ndarray]:
    """Phone at each frame centre of every clean clip (None where no phone tier covers it)."""
    out = {}
    for clip in clips:
        if clip.extra.get("condition") == "clean" and clip.tiers.get("phones"):
            n = model.n_frames(hook, len(audio_of(clip)))
            out[clip.extra["clean_id"]] = np.array(clip.labels_at("phones", model.frame_centres(hook, n)), dtype=object)
    return out


def _figure(sim: pd.DataFrame, rob: pd.DataFrame, hooks: Sequence[str]):
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("CKA with clean, per layer (massive frames left out)", "phone probe trained on clean"))
    short = {h: h.replace("encoder.", "").replace(".hook_resid_post", "") for h in hooks}
    for col, (df, y) in enumerate(((sim, "cka_no_massive"), (rob, "accuracy")), start=1):
        for cond, part in df.groupby("condition"):
            part = part.set_index("hook").reindex(list(hooks))
            fig.add_scatter(x=[short[h] for h in hooks], y=part[y], name=f"{cond}", legendgroup=cond,
                            showlegend=col == 1, row=1, col=col, mode="lines+markers")
    fig.update_layout(height=420, width=1100, legend={"orientation": "h", "y": -0.25})
    return fig


def evaluate_conditions(corpus: str | os.PathLike | Corpus, model: str, enhancers: Sequence[str], out: str | os.PathLike,
                        hooks: str | Sequence[str] = "encoder.blocks.*.hook_resid_post",
                        noise_only: str | os.PathLike | None = None, verbose: bool = True) -> dict:
    """Run every step of the module docstring; returns the tables by name."""
    from workbench.models import load

    corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    out = Path(out)
    asr = load(model)
    hook_list = asr.resolve_hooks(hooks) if isinstance(hooks, str) else list(hooks)
    enhanced = {}
    for spec in enhancers:
        enh = load(spec)
        enhanced[enh.name] = enhance_corpus(corpus, enh, out / "enhanced" / enh.name, verbose)

    def audio_of(clip: Clip) -> np.ndarray:
        return load_audio(corpus.audio_path(clip), sr=asr.sample_rate)

    everything = Corpus(list(corpus) + [c for cs in enhanced.values() for c in cs], root=corpus.root)
    wer, transcripts = _wer(asr, list(everything), audio_of)
    tables = {"quality": _quality(corpus, enhanced) if enhanced else pd.DataFrame(), "wer": wer,
              "transcripts": transcripts}
    acts = activations_by_condition(asr, everything, hook_list, audio_of, verbose)
    tables["similarity"] = similarity_by_layer(acts, hook_list)
    labels = _phone_labels(asr, list(corpus), hook_list[0], audio_of)
    tables["robustness"] = robustness_by_layer(acts, labels, hook_list) if len(labels) >= 2 else pd.DataFrame()
    if noise_only:
        tables["hallucination"] = _hallucination(asr, load_corpus(noise_only), enhancers, verbose)
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        write_text(out / f"{name}.csv", df.to_csv(index=False))
    if len(tables["quality"]):
        summary = tables["quality"].groupby(["condition", "enhancer"])[["si_snr_noisy_db", "si_snr_enhanced_db",
                                                                       "improvement_db"]].mean().reset_index()
        write_text(out / "quality_summary.csv", summary.to_csv(index=False))
    if len(tables["robustness"]):
        _figure(tables["similarity"], tables["robustness"], hook_list).write_html(str(out / "conditions.html"))
    write_json(out / "summary.json", {
        "model": model, "enhancers": list(enhanced), "hooks": hook_list, "clips": len(corpus),
        "corpus": str(Path(corpus.root).resolve()) if corpus.root else None,
        "wer": dict(zip(tables["wer"].condition, tables["wer"].wer.round(4))),
        "si_snr_improvement_db": (tables["quality"].groupby("enhancer").improvement_db.mean().round(2).to_dict()
                                  if len(tables["quality"]) else {})})
    return tables


def _hallucination(asr, noise: Corpus, enhancers: Sequence[str], verbose: bool) -> pd.DataFrame:
    from workbench.models import load

    rows = []
    for name in ["none", *enhancers]:
        enh = None if name == "none" else load(name)
        said = 0
        for clip in noise:
            x = load_audio(noise.audio_path(clip), sr=16000)
            if enh is not None:
                x = resample(enh.enhance(resample(x, 16000, enh.sample_rate)), enh.sample_rate, 16000)
            said += bool(normalize_text(asr.transcribe(x)))
        rows.append({"enhancer": name, "hallucination_rate": said / max(len(noise), 1), "clips": len(noise)})
    return pd.DataFrame(rows)
