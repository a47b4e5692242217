"""Figures of the app: small pure functions from data (arrays, DataFrames) to plotly figures.

Nothing here reads files or knows about Dash, so every figure is unit-tested without a browser.
Probe figures reuse :mod:`probes.report` (the same plots the probe run writes as HTML).

Example
-------
>>> fig = histogram_figure({"edges": [0.0, 1.0, 2.0], "counts": [3, 1]}, "feature 7")
>>> [float(x) for x in fig.data[0].x], list(fig.data[0].y)
([0.5, 1.5], [3, 1])
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from probes.report import confusion_figure, layer_figure, short_hook

__all__ = ["histogram_figure", "activation_figure", "features_over_time_figure", "cochleagram_tokens_figure",
           "token_usage_figure", "token_patch_figure", "probe_layers_figure", "probe_confusion_figure",
           "eeg_layers_figure", "eeg_channels_figure", "trf_figure", "pareto_figure", "empty_figure"]

TEMPLATE = "plotly_white"
HIGHLIGHT = "rgba(255, 165, 0, 0.25)"


def empty_figure(message: str) -> go.Figure:
    """A blank figure that says why there is nothing to plot."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(template=TEMPLATE, height=200, xaxis_visible=False, yaxis_visible=False)
    return fig


def histogram_figure(hist: Mapping, title: str = "") -> go.Figure:
    """Bars of a feature's non-zero activation histogram (``{"edges": [...], "counts": [...]}``)."""
    edges, counts = np.asarray(hist["edges"], dtype=float), list(hist["counts"])
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name="frames"))
    fig.update_layout(title=title, xaxis_title="activation (non-zero)", yaxis_title="frames", template=TEMPLATE,
                      height=280, margin={"t": 40, "b": 40})
    return fig


def _tier_rows(fig: go.Figure, tiers: Mapping[str, Sequence], t0: float, t1: float, first_row: int) -> None:
    """One row per tier: a rectangle and label for each segment overlapping ``[t0, t1]``."""
    for i, (name, segs) in enumerate(tiers.items()):
        row = first_row + i
        xs, texts = [], []
        for a, b, label in segs:
            if b < t0 or a > t1:
                continue
            a, b = max(a, t0), min(b, t1)
            fig.add_shape(type="rect", x0=a, x1=b, y0=0, y1=1, line={"width": 1, "color": "#888"},
                          fillcolor="#f0f0f0" if len(xs) % 2 else "#e0e8f5", row=row, col=1)
            xs.append((a + b) / 2)
            texts.append(str(label))
        fig.add_trace(go.Scatter(x=xs, y=[0.5] * len(xs), text=texts, mode="text", showlegend=False,
                                 hoverinfo="text", textfont={"size": 11}), row=row, col=1)
        fig.update_yaxes(range=[0, 1], showticklabels=False, title_text=name, row=row, col=1)


def activation_figure(times: np.ndarray, freqs: np.ndarray, db: np.ndarray, act_times: np.ndarray,
                      acts: np.ndarray, tiers: Mapping[str, Sequence] | None = None, title: str = "",
                      marker: tuple[float, float] | None = None) -> go.Figure:
    """Log-mel spectrogram with the feature's activation drawn over it, tier rows beneath.

    ``db [n_mels, T]`` at ``times``; ``acts`` at ``act_times`` (frame centres), drawn on a second
    axis; ``tiers`` ``{name: [(start_s, end_s, label), ...]}``; ``marker`` shades the example frame.
    """
    tiers = dict(tiers or {})
    n = 1 + len(tiers)
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.02,
                        row_heights=[0.7] + [0.3 / max(len(tiers), 1)] * len(tiers),
                        specs=[[{"secondary_y": True}]] + [[{}]] * len(tiers))
    fig.add_trace(go.Heatmap(x=times, y=np.arange(len(freqs)), z=db, colorscale="Magma", showscale=False,
                             customdata=np.repeat(np.round(freqs)[:, None], len(times), 1),
                             hovertemplate="%{x:.2f} s, %{customdata} Hz: %{z:.0f} dB<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=act_times, y=acts, mode="lines", name="activation",
                             line={"color": "#00e5ff", "width": 2.5}), row=1, col=1, secondary_y=True)
    if marker is not None:
        fig.add_vrect(x0=marker[0], x1=marker[1], fillcolor="rgba(255,255,255,0.25)", line_width=0, row=1, col=1)
    ticks = np.linspace(0, len(freqs) - 1, 5).astype(int)
    fig.update_yaxes(tickvals=ticks, ticktext=[f"{freqs[i] / 1000:.1f}k" for i in ticks], title_text="Hz",
                     row=1, col=1, secondary_y=False)
    top = float(np.nanmax(acts)) if len(acts) and np.isfinite(acts).any() else 1.0
    fig.update_yaxes(range=[0, max(top, 1e-6) * 1.1], title_text="activation", row=1, col=1, secondary_y=True)
    if len(times):
        _tier_rows(fig, tiers, float(times[0]), float(times[-1]), 2)
    fig.update_xaxes(title_text="time (s)", row=n, col=1)
    fig.update_layout(title=title, template=TEMPLATE, height=260 + 45 * len(tiers), showlegend=False,
                      margin={"t": 40 if title else 10, "b": 40, "l": 60, "r": 60})
    return fig


def features_over_time_figure(times: np.ndarray, codes: np.ndarray, top: int = 12, title: str = "") -> go.Figure:
    """Heatmap of the ``top`` features most active in a clip (by peak activation) over time."""
    codes = np.asarray(codes)
    if codes.size == 0 or not np.any(codes > 0):
        return empty_figure("no feature fires in this clip")
    peak = codes.max(axis=0)
    order = [int(f) for f in np.argsort(-peak)[:top] if peak[f] > 0]
    fig = go.Figure(go.Heatmap(x=times, y=[f"f{f}" for f in order], z=codes[:, order].T, colorscale="Viridis",
                               hovertemplate="%{y} at %{x:.2f} s: %{z:.2f}<extra></extra>",
                               colorbar={"title": "act"}))
    fig.update_layout(title=title, xaxis_title="time (s)", yaxis_title="feature", template=TEMPLATE,
                      height=max(260, 24 * len(order) + 120), yaxis_autorange="reversed")
    return fig


def cochleagram_tokens_figure(times: np.ndarray, coch: np.ndarray, tokens: np.ndarray,
                              centre_hz: np.ndarray | None = None, title: str = "",
                              highlight: int | None = None) -> go.Figure:
    """Cochleagram ``[T, channels]`` with its token sequence ``[T]`` as a strip under it."""
    coch, tokens = np.asarray(coch), np.asarray(tokens)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.03)
    fig.add_trace(go.Heatmap(x=times, z=coch.T, colorscale="Viridis", showscale=False,
                             hovertemplate="%{x:.3f} s, channel %{y}: %{z:.2f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Heatmap(x=times, y=["token"], z=tokens[None, :], colorscale="Turbo", showscale=False,
                             hovertemplate="%{x:.3f} s: token %{z}<extra></extra>"), row=2, col=1)
    if highlight is not None:
        hit = times[tokens == highlight]
        fig.add_trace(go.Scatter(x=hit, y=["token"] * len(hit), mode="markers", name=f"token {highlight}",
                                 marker={"symbol": "triangle-down", "color": "white", "size": 8,
                                         "line": {"color": "black", "width": 1}}), row=2, col=1)
    if centre_hz is not None and len(centre_hz):
        ticks = np.linspace(0, len(centre_hz) - 1, 6).astype(int)
        fig.update_yaxes(tickvals=ticks, ticktext=[f"{centre_hz[i]:.0f}" for i in ticks], title_text="Hz",
                         row=1, col=1)
    fig.update_xaxes(title_text="time (s)", row=2, col=1)
    fig.update_layout(title=title, template=TEMPLATE, height=420, showlegend=False, margin={"t": 40})
    return fig


def token_usage_figure(counts: pd.Series, title: str = "") -> go.Figure:
    """Rank-frequency bars of token usage (``counts``: token id -> occurrences)."""
    counts = counts.sort_values(ascending=False)
    fig = go.Figure(go.Bar(x=list(range(1, len(counts) + 1)), y=counts.to_numpy(),
                           customdata=counts.index.to_numpy(),
                           hovertemplate="rank %{x}: token %{customdata}, %{y} frames<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="token rank", yaxis_title="frames", yaxis_type="log",
                      template=TEMPLATE, height=300, margin={"t": 40})
    return fig


def token_patch_figure(offsets_s: np.ndarray, patch: np.ndarray, title: str = "") -> go.Figure:
    """Average cochleagram ``[len(offsets), channels]`` around a token's occurrences (offset 0)."""
    fig = go.Figure(go.Heatmap(x=offsets_s * 1000, z=np.asarray(patch).T, colorscale="Viridis",
                               hovertemplate="%{x:.0f} ms, channel %{y}: %{z:.2f}<extra></extra>"))
    fig.add_vline(x=0, line={"color": "white", "dash": "dot"})
    fig.update_layout(title=title, xaxis_title="time from the token (ms)", yaxis_title="channel",
                      template=TEMPLATE, height=320, margin={"t": 40})
    return fig


def probe_layers_figure(summary: pd.DataFrame, highlight: str | None = None, title: str = "") -> go.Figure:
    """The probe run's layer curves (:func:`probes.report.layer_figure`) with one layer shaded."""
    fig = layer_figure(summary, title)
    if highlight is not None and highlight in set(summary["hook"]):
        fig.add_vrect(x0=short_hook(highlight), x1=short_hook(highlight), line={"color": "orange", "width": 14},
                      opacity=0.35, layer="below", name="selected")
        row = summary[summary["hook"] == highlight].iloc[0]
        fig.add_trace(go.Scatter(x=[short_hook(highlight)], y=[row["accuracy"]], mode="markers", name="selected layer",
                                 marker={"size": 16, "color": "orange", "symbol": "star"}), row=1, col=1)
    return fig


def probe_confusion_figure(conf: pd.DataFrame, title: str = "") -> go.Figure:
    """Row-normalised confusion matrix (:func:`probes.report.confusion_figure`) of a true x predicted table."""
    return confusion_figure(conf.to_numpy(), [str(c) for c in conf.index], title)


def eeg_layers_figure(layers: pd.DataFrame, baselines: Mapping[str, float] | None = None,
                      highlight: str | None = None, title: str = "") -> go.Figure:
    """Encoding r across layers (``layers``: ``layer`` and ``r``, optional ``r_std``) with acoustic
    baselines as dashed horizontal lines and one layer marked."""
    x = [short_hook(str(h)) for h in layers["layer"]]
    err = layers["r_std"] if "r_std" in layers else None
    fig = go.Figure(go.Scatter(x=x, y=layers["r"], mode="lines+markers", name="model features",
                               error_y=None if err is None else {"type": "data", "array": err}))
    for i, (name, r) in enumerate((baselines or {}).items()):
        fig.add_hline(y=float(r), line={"dash": ["dash", "dot", "dashdot"][i % 3]}, annotation_text=name)
    if highlight is not None and highlight in set(map(str, layers["layer"])):
        r = float(layers.loc[layers["layer"].astype(str) == highlight, "r"].iloc[0])
        fig.add_trace(go.Scatter(x=[short_hook(highlight)], y=[r], mode="markers", name="selected layer",
                                 marker={"size": 16, "color": "orange", "symbol": "star"}))
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="encoding r (held-out)", template=TEMPLATE,
                      height=360, legend={"orientation": "h", "y": -0.25})
    return fig


def eeg_channels_figure(summary: pd.DataFrame, title: str = "") -> go.Figure:
    """Per-channel r (bars, starred where ``p_fdr`` < 0.05)."""
    df = summary.sort_values("r", ascending=False)
    sig = df["p_fdr"] < 0.05 if "p_fdr" in df else pd.Series(False, index=df.index)
    fig = go.Figure(go.Bar(x=df["channel"].astype(str), y=df["r"], marker_color=np.where(sig, "#d62728", "#7f7f7f"),
                           hovertemplate="%{x}: r=%{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="channel (red: FDR-corrected p < 0.05)", yaxis_title="r",
                      template=TEMPLATE, height=320, margin={"t": 40})
    return fig


def trf_figure(lags_s: np.ndarray, kernels: np.ndarray, channels: Sequence[str] | None = None,
               title: str = "") -> go.Figure:
    """TRF kernels ``[lags, channels]`` against lag (one line per channel)."""
    kernels = np.asarray(kernels)
    kernels = kernels[:, None] if kernels.ndim == 1 else kernels.reshape(len(kernels), -1)
    names = list(channels) if channels is not None else [f"ch{i}" for i in range(kernels.shape[1])]
    fig = go.Figure([go.Scatter(x=np.asarray(lags_s) * 1000, y=kernels[:, i], mode="lines", name=str(names[i]))
                     for i in range(kernels.shape[1])])
    fig.update_layout(title=title, xaxis_title="lag (ms)", yaxis_title="weight", template=TEMPLATE, height=320)
    return fig


def pareto_figure(sweep: pd.DataFrame, refs: Mapping[str, Mapping] | None = None, chosen: Mapping | None = None,
                  title: str = "") -> go.Figure:
    """Sweep points (hallucination rate vs WER, hover shows the settings) with reference points
    (baseline, gates: ``{name: {"wer", "hallucination_rate"}}``) and the chosen setting."""
    settings = [c for c in sweep.columns if c not in ("wer", "hallucination_rate")]
    hover = [", ".join(f"{c}={v}" for c, v in zip(settings, vals))
             for vals in sweep[settings].astype(str).itertuples(index=False)] if settings else None
    fig = go.Figure(go.Scatter(x=sweep["wer"], y=sweep["hallucination_rate"], mode="markers", name="sweep",
                               text=hover, hovertemplate="WER %{x:.3f}, halluc. %{y:.3f}<br>%{text}<extra></extra>",
                               marker={"size": 9, "color": "#1f77b4", "opacity": 0.7}))
    symbols = iter(["diamond", "square", "cross", "x", "triangle-up"])
    for name, r in (refs or {}).items():
        if isinstance(r, Mapping) and r.get("wer") is not None and r.get("hallucination_rate") is not None:
            fig.add_trace(go.Scatter(x=[r["wer"]], y=[r["hallucination_rate"]], mode="markers+text", name=name,
                                     text=[name], textposition="top center",
                                     marker={"size": 14, "symbol": next(symbols, "circle")}))
    if chosen and chosen.get("wer") is not None:
        fig.add_trace(go.Scatter(x=[chosen["wer"]], y=[chosen["hallucination_rate"]], mode="markers", name="steered",
                                 marker={"size": 18, "symbol": "star", "color": "orange"}))
    fig.update_layout(title=title, xaxis_title="WER", yaxis_title="hallucination rate", template=TEMPLATE,
                      height=420, legend={"orientation": "h", "y": -0.2})
    return fig
