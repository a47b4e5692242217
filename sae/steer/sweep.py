"""Choose N and the strength on a dev split: the largest hallucination drop within a WER budget.

Every setting transcribes all dev clips (never evaluation clips). The chosen setting has the
lowest hallucination rate among those whose WER is at most ``baseline WER + max_wer_increase``,
where the budget is judged on the capped WER (each clip's errors at most its reference length, see
:func:`sae.steer.metrics.capped_wer`: a looping baseline clip must not make a broken setting look
better); ties go to the lower capped WER, then fewer features, then the smaller strength. The unsteered baseline
is always a candidate, so a sweep where nothing helps chooses "no edit". ``sweep.csv`` keeps the
whole table and ``pareto.html`` shows hallucination rate against WER with the Pareto front.

Example
-------
>>> grid = settings("sae", n_features=[1, 4], strengths=[0.0, 4.0], available=3)
>>> [(g["n_features"], g["strength"]) for g in grid]
[(1, 0.0), (1, 4.0), (3, 0.0), (3, 4.0)]
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sae.steer.metrics import capped_wer, point
from workbench.atomic import atomic_path, write_text

log = logging.getLogger(__name__)
#: how the sweep chose (``rule`` in sweep.csv and in steering.json's ``sweep``)
RULE_BUDGET = "lowest hallucination rate with capped WER <= baseline + max_wer_increase"
RULE_NO_REFERENCES = "hallucination rate only: no dev transcripts, WER budget NOT applied"


def settings(method: str, n_features: Sequence[int], strengths: Sequence[float], available: int) -> list[dict]:
    """The sweep grid; N values above the number of selected features are capped (and deduplicated)."""
    if method != "sae":
        return [{"n_features": None, "strength": float(s)} for s in strengths]
    ns = sorted({min(int(n), available) for n in n_features if int(n) > 0 and available > 0})
    return [{"n_features": n, "strength": float(s)} for n in ns for s in strengths]


def transcribe_all(model, audio: list[np.ndarray], steering=None) -> list[str]:
    """Greedy transcripts of clips (batched), under ``steering`` when given."""
    if steering is None:
        return list(model.transcribe(audio))
    with steering.applied(model):
        return list(model.transcribe(audio))


def run_sweep(model, steering, audio: list[np.ndarray], references: Sequence[str | None],
              nonspeech: Sequence[bool], grid: list[dict], max_wer_increase: float = 0.005,
              verbose: bool = True) -> tuple[pd.DataFrame, dict]:
    """``(table, chosen row)`` over ``grid`` (``steering`` supplies method, edit, features, gate)."""
    base_texts = transcribe_all(model, audio)
    h0, w0 = point(base_texts, references, nonspeech)
    rows = [{"n_features": 0, "strength": 0.0, "hallucination_rate": h0, "wer": w0,
             "wer_capped": capped_wer(base_texts, references), "baseline": True}]
    for g in tqdm(grid, desc="sweep", disable=not verbose):
        st = steering.with_(strength=g["strength"], **({"n_features": g["n_features"]}
                                                        if g["n_features"] is not None else {}))
        texts = transcribe_all(model, audio, st)
        h, w = point(texts, references, nonspeech)
        rows.append({**g, "hallucination_rate": h, "wer": w, "wer_capped": capped_wer(texts, references),
                     "baseline": False})
    df = pd.DataFrame(rows)
    df["wer_change"] = df["wer"] - w0 if w0 is not None else np.nan
    df["wer_capped_change"] = df["wer_capped"] - df["wer_capped"].iloc[0]
    df["hallucination_drop"] = 1 - df["hallucination_rate"] / h0 if h0 else 0.0
    if w0 is None:  # no reference words: the WER guard cannot be applied; say so, loudly and on record
        log.warning("the dev clips have no speech with transcripts: the WER budget (%g) cannot be checked, "
                    "the sweep chooses by hallucination rate alone (recorded as rule %r)", max_wer_increase,
                    RULE_NO_REFERENCES)
        budget = pd.Series(True, index=df.index)
        df["rule"] = RULE_NO_REFERENCES
    else:
        budget = df["wer_capped_change"] <= max_wer_increase + 1e-12
        df["rule"] = RULE_BUDGET
    df["within_budget"] = budget
    cand = df[budget].assign(abs_strength=lambda d: d["strength"].abs(), n=lambda d: d["n_features"].fillna(0),
                             edited=lambda d: ~d["baseline"].astype(bool))
    # plain decoding wins every tie on hallucination rate: an edit that lowers no hallucination is not
    # chosen for a WER difference of a word or two on the dev clips
    best = cand.sort_values(["hallucination_rate", "edited", "wer_capped", "n", "abs_strength"], kind="stable").iloc[0]
    df["chosen"] = df.index == best.name
    return df, df.loc[best.name].to_dict()


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Rows no other row beats on both hallucination rate and WER (sorted by hallucination rate)."""
    d = df.dropna(subset=["hallucination_rate", "wer"]).sort_values(["hallucination_rate", "wer"])
    keep, best_wer = [], np.inf
    for i, row in d.iterrows():
        if row["wer"] < best_wer:
            keep.append(i)
            best_wer = row["wer"]
    return d.loc[keep]


def write_sweep(df: pd.DataFrame, out: str | Path, title: str) -> None:
    """``sweep.csv`` and the plotly ``pareto.html``."""
    import plotly.graph_objects as go

    out = Path(out)
    write_text(out / "sweep.csv", df.to_csv(index=False))
    fig = go.Figure()
    label = [f"N={'-' if pd.isna(n) else int(n)} s={s:g}" for n, s in zip(df["n_features"], df["strength"])]
    fig.add_trace(go.Scatter(x=df["hallucination_rate"], y=df["wer"], mode="markers", name="settings", text=label,
                             marker=dict(color=df["strength"], colorscale="Viridis", showscale=True, size=9,
                                         colorbar=dict(title="strength")),
                             hovertemplate="%{text}<br>hallucination %{x:.3f}<br>WER %{y:.3f}<extra></extra>"))
    front = pareto_front(df)
    fig.add_trace(go.Scatter(x=front["hallucination_rate"], y=front["wer"], mode="lines", name="Pareto front"))
    for mask, name, symbol in ((df["baseline"], "plain decoding", "x"), (df["chosen"], "chosen", "star")):
        part = df[mask.astype(bool)]
        fig.add_trace(go.Scatter(x=part["hallucination_rate"], y=part["wer"], mode="markers", name=name,
                                 marker=dict(symbol=symbol, size=16, color="red")))
    fig.update_layout(title=title, xaxis_title="hallucination rate (non-speech dev clips)",
                      yaxis_title="WER (speech dev clips)", width=900, height=600)
    with atomic_path(out / "pareto.html") as tmp:
        fig.write_html(str(tmp), include_plotlyjs="directory", full_html=True)
