"""Hallucination rate and WER of transcripts, with paired bootstrap 95% intervals.

- ``hallucination_rate``: share of clips without speech whose normalized transcript is not empty;
- ``wer``: word error rate pooled over the speech clips with transcripts (errors / reference words,
  jiwer; text normalized with :func:`workbench.text.normalize_text`).

Intervals resample clips (non-speech and speech separately) with replacement; the same resamples
serve every condition, so ``hallucination_drop`` (relative, vs the baseline) and ``wer_change``
(absolute, vs the baseline) get paired intervals.

Example
-------
>>> refs = ["the cat sat", None, None]
>>> m = summarize({"baseline": ["the cat sat", "you", "you"], "steered": ["the cat", "", "you"]},
...               refs, [False, True, True], n_boot=200, seed=0)
>>> m["baseline"]["hallucination_rate"], m["steered"]["hallucination_rate"], round(m["steered"]["wer"], 3)
(1.0, 0.5, 0.333)
>>> m["steered"]["hallucination_drop"]
0.5
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from workbench.text import normalize_text, word_errors  # noqa: F401 (word_errors is re-exported)


def _ci(samples: np.ndarray) -> list[float] | None:
    """Percentile 95% interval; NaN draws (undefined) are left out, ``-inf`` draws count as the lowest
    values (an infinite bound is written as ``None``: unbounded)."""
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return None
    method = "linear" if np.isfinite(samples).all() else "inverted_cdf"  # no interpolation with -inf
    lo, hi = np.quantile(samples, [0.025, 0.975], method=method)
    return [round(float(v), 5) if np.isfinite(v) else None for v in (lo, hi)]


def relative_drop(rate: np.ndarray, base_rate: np.ndarray) -> np.ndarray:
    """``1 - rate / base_rate`` per bootstrap draw, defined on every draw: a draw whose baseline has
    no hallucination counts as no drop (0) when the condition has none either and as ``-inf`` (worse
    than any finite drop) when it has some. Dropping those draws, as before, biased the interval
    upwards exactly where the baseline rate is low.

    >>> relative_drop(np.array([0.1, 0.0, 0.2]), np.array([0.5, 0.0, 0.0])).tolist()
    [0.8, 0.0, -inf]
    """
    rate, base_rate = np.asarray(rate, dtype=float), np.asarray(base_rate, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1 - rate / base_rate
    zero = base_rate == 0
    out[zero] = np.where(rate[zero] == 0, 0.0, -np.inf)
    return out


def summarize(texts: Mapping[str, Sequence[str]], references: Sequence[str | None], nonspeech: Sequence[bool],
              baseline: str = "baseline", n_boot: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Per condition: rates, counts, bootstrap intervals and the paired change vs ``baseline``."""
    nonspeech = np.asarray(nonspeech, dtype=bool)
    speech_idx = np.array([i for i, r in enumerate(references) if not nonspeech[i] and r and normalize_text(r)],
                          dtype=int)
    ns_idx = np.flatnonzero(nonspeech)
    rng = np.random.default_rng(seed)
    boot_ns = rng.integers(0, len(ns_idx), size=(n_boot, len(ns_idx))) if len(ns_idx) else None
    boot_sp = rng.integers(0, len(speech_idx), size=(n_boot, len(speech_idx))) if len(speech_idx) else None
    per: dict[str, dict] = {}
    for name, hyp in texts.items():
        hall = np.array([bool(normalize_text(hyp[i])) for i in ns_idx], dtype=float)
        ew = np.array([word_errors(references[i], hyp[i]) for i in speech_idx], dtype=float).reshape(-1, 2)
        per[name] = {"hall": hall, "err": ew[:, 0], "words": ew[:, 1]}

    def rate(h, idx):
        return h[idx].mean(-1) if idx is not None else np.full(n_boot, np.nan)

    def wer(e, w, idx):
        return e[idx].sum(-1) / np.maximum(w[idx].sum(-1), 1) if idx is not None else np.full(n_boot, np.nan)

    base = per.get(baseline)
    out = {}
    for name, p in per.items():
        h = float(p["hall"].mean()) if len(p["hall"]) else None
        w = float(p["err"].sum() / max(p["words"].sum(), 1)) if len(p["words"]) else None
        br, bw = rate(p["hall"], boot_ns), wer(p["err"], p["words"], boot_sp)
        res = {"hallucination_rate": h, "hallucination_ci": _ci(br), "hallucinated": int(p["hall"].sum()),
               "n_nonspeech": len(ns_idx), "wer": w, "wer_ci": _ci(bw), "n_speech": len(speech_idx),
               "reference_words": int(p["words"].sum())}
        if base is not None:
            b_rate, b_wer = rate(base["hall"], boot_ns), wer(base["err"], base["words"], boot_sp)
            h0 = float(base["hall"].mean()) if len(base["hall"]) else None
            w0 = float(base["err"].sum() / max(base["words"].sum(), 1)) if len(base["words"]) else None
            with np.errstate(divide="ignore", invalid="ignore"):
                res["hallucination_drop"] = (1 - h / h0) if h0 else None
                res["hallucination_drop_ci"] = _ci(relative_drop(br, b_rate))
            res["wer_change"] = (w - w0) if w is not None and w0 is not None else None
            res["wer_change_ci"] = _ci(bw - b_wer)
        out[name] = res
    return out


def capped_wer(texts: Sequence[str], references: Sequence[str | None]) -> float | None:
    """Pooled WER with each clip's errors capped at its reference length.

    A clip whose transcript loops (" god god god ...") counts as every word wrong, not as ten times
    that: on a small dev split one looping baseline clip would otherwise make a setting that breaks
    every other clip look like a WER improvement. ``None`` without reference words.

    >>> capped_wer(["one two", "go go go go go go"], ["one two", "go"])  # 0 + min(5, 1) errors / 3 words
    0.3333333333333333
    """
    errors = words = 0
    for text, ref in zip(texts, references):
        if ref and normalize_text(ref):
            e, w = word_errors(ref, text)
            errors, words = errors + min(e, w), words + w
    return errors / words if words else None


def point(texts: Sequence[str], references: Sequence[str | None], nonspeech: Sequence[bool]) -> tuple[float, float]:
    """(hallucination rate, pooled WER) without intervals: what the sweep compares."""
    m = summarize({"x": texts}, references, nonspeech, baseline="", n_boot=1)["x"]
    return m["hallucination_rate"], m["wer"]
