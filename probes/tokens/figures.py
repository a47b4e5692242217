"""Plots of a token analysis: rank-frequency per codebook, purity / MI against their chance values,
unit edit distance per perturbation (one plotly HTML that opens offline).

Example
-------
>>> tokens_figure(rank_frequency, purity, stability, "work/tokens/units/tokens.html")   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.atomic import atomic_path

__all__ = ["figure", "token_cochleagram_figure", "tokens_figure"]


def figure(rf: pd.DataFrame, purity: pd.DataFrame, stability: pd.DataFrame | None, title: str = ""):
    """The plotly figure (rank-frequency | purity and MI | edit distance)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("rank-frequency (log-log)", "purity vs chance, codebook 0",
                                                        "unit edit distance, codebook 0"))
    for k, g in rf.groupby("codebook"):
        fig.add_trace(go.Scatter(x=g["rank"], y=g["share"], mode="lines", name=f"codebook {k}"), row=1, col=1)
    fig.update_xaxes(type="log", title_text="rank", row=1, col=1)
    fig.update_yaxes(type="log", title_text="share of frames", row=1, col=1)
    if len(purity):
        p = purity[purity["codebook"] == 0]
        fig.add_trace(go.Bar(x=p["target"], y=p["purity"], name="purity"), row=1, col=2)
        fig.add_trace(go.Bar(x=p["target"], y=p["purity_chance"], name="purity, shuffled tokens (chance)"),
                      row=1, col=2)
    if stability is not None and len(stability):
        s = stability[stability["codebook"] == 0]
        fig.add_trace(go.Bar(x=s["test"], y=s["ued"], name="unit edit distance"), row=1, col=3)
        fig.add_trace(go.Bar(x=s["test"], y=s["ued_collapsed"], name="UED, repeats collapsed"), row=1, col=3)
    fig.update_layout(title=title, height=420, barmode="group", legend={"orientation": "h", "y": -0.2})
    return fig


def tokens_figure(rf, purity, stability, path, title: str = "") -> Path:
    fig = figure(rf, purity, stability, title)
    with atomic_path(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs="directory", full_html=True)
    return Path(path)


def token_cochleagram_figure(tc, centre_hz=None, top: int = 64, title: str = ""):
    """Heatmap of each frequent token's mean cochleagram frame (``token_cochleagrams.npz``: ``codes``,
    ``counts``, ``mean [n, channels]``): one column per token, the ``top`` most frequent, by rank."""
    import numpy as np
    import plotly.graph_objects as go

    codes, counts, mean = (np.asarray(tc[k]) for k in ("codes", "counts", "mean"))
    n = min(top, len(codes))
    labels = [f"#{i + 1}: {int(c)}" for i, c in enumerate(codes[:n])]
    fig = go.Figure(go.Heatmap(x=labels, z=mean[:n].T, colorscale="Viridis", customdata=np.tile(counts[:n], (mean.shape[1], 1)),
                               hovertemplate="token %{x} (%{customdata} frames), channel %{y}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title or f"mean cochleagram frame of the {n} most frequent tokens (codebook 0)",
                      xaxis_title="token (rank: id)", yaxis_title="channel", height=340, margin={"t": 40})
    if centre_hz is not None and len(centre_hz) == mean.shape[1]:
        ticks = np.linspace(0, len(centre_hz) - 1, 6).astype(int)
        fig.update_yaxes(tickvals=ticks, ticktext=[f"{centre_hz[i]:.0f}" for i in ticks], title_text="Hz")
    return fig
