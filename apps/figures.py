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

import functools
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sequential
from plotly.subplots import make_subplots

from probes.report import confusion_figure, layer_figure, short_hook

__all__ = ["histogram_figure", "activation_figure", "features_over_time_figure", "cochleagram_tokens_figure",
           "token_usage_figure", "token_patch_figure", "probe_layers_figure", "probe_confusion_figure",
           "condition_layers_figure",
           "eeg_layers_figure", "eeg_channels_figure", "trf_figure", "pareto_figure", "empty_figure"]

TEMPLATE = "plotly_white"
@functools.lru_cache(maxsize=1)
def _template() -> dict:
    """The template as plotly.js reads it: unvalidated figures do not expand a template's name."""
    import plotly.io as pio

    return pio.templates[TEMPLATE].to_plotly_json()


# explicit stops: without plotly's validation a named scale goes to plotly.js as is, which lacks "Magma"
MAGMA = [[i / (len(sequential.Magma) - 1), c] for i, c in enumerate(sequential.Magma)]


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


def _tier_traces(tiers: Mapping[str, Sequence], t0: float, t1: float) -> list[dict]:
    """One horizontal bar trace per tier (segments overlapping ``[t0, t1]``, labelled inside):
    one trace instead of a shape per segment keeps the figure cheap to build and to send."""
    traces = []
    for i, (name, segs) in enumerate(tiers.items()):
        kept = [(max(a, t0), min(b, t1), str(label)) for a, b, label in segs if b >= t0 and a <= t1]
        traces.append({"type": "bar", "orientation": "h", "y": [name] * len(kept), "base": [a for a, _, _ in kept],
                       "x": [b - a for a, b, _ in kept], "text": [lab for _, _, lab in kept], "name": name,
                       "textposition": "inside", "insidetextanchor": "middle", "textfont": {"size": 11},
                       "marker": {"color": ["#e0e8f5", "#f0f0f0"] * (len(kept) // 2 + 1), "line": {"color": "#888",
                                                                                               "width": 1}},
                       "hovertemplate": "%{text}: %{base:.2f}-%{x:.2f} s<extra></extra>", "xaxis": "x",
                       "yaxis": f"y{3 + i}", "showlegend": False})
        traces[-1]["marker"]["color"] = traces[-1]["marker"]["color"][: len(kept)]
    return traces


def activation_figure(*args, **kwargs) -> go.Figure:
    """:func:`activation_spec` as a plotly Figure (for tests and scripts)."""
    return go.Figure(activation_spec(*args, **kwargs), _validate=False)


def activation_spec(times: np.ndarray, freqs: np.ndarray, db: np.ndarray, act_times: np.ndarray,
                    acts: np.ndarray, tiers: Mapping[str, Sequence] | None = None, title: str = "",
                    marker: tuple[float, float] | None = None, act_max: float | None = None) -> dict:
    """Log-mel spectrogram with the feature's activation drawn over it, tier rows beneath.

    ``db [n_mels, T]`` at ``times``; ``acts`` at ``act_times`` (frame centres), drawn on a second
    axis (``act_max``: its top, shared by every card of a feature so they compare); ``tiers``
    ``{name: [(start_s, end_s, label), ...]}``; ``marker`` shades the example frame.
    A plain figure dict (``dcc.Graph`` takes it as is): the features page draws fifteen of these per
    click, and plotly's validation and deep copies of a Figure took ~100 ms each.
    """
    tiers = dict(tiers or {})
    times, acts = np.asarray(times, dtype=float), np.asarray(acts, dtype=float)
    n_tiers, gap, tier_h = len(tiers), 0.02, 0.12
    spec_bottom = n_tiers * (tier_h + gap)
    ticks = np.linspace(0, len(freqs) - 1, 5).astype(int)
    top = float(np.nanmax(acts)) if acts.size and np.isfinite(acts).any() else 1.0
    top = float(act_max) if act_max else top
    t0, t1 = (float(times[0]), float(times[-1])) if len(times) else (0.0, 1.0)
    data = [{"type": "heatmap", "x": times, "y": np.arange(len(freqs)), "z": np.round(db, 1), "colorscale": MAGMA,
             "showscale": False, "hovertemplate": "%{x:.2f} s, band %{y}: %{z:.0f} dB<extra></extra>"},
            {"type": "scatter", "x": np.asarray(act_times, dtype=float), "y": acts, "mode": "lines", "name": "activation",
             "line": {"color": "#00e5ff", "width": 2.5}, "yaxis": "y2"}] + _tier_traces(tiers, t0, t1)
    layout = {"title": {"text": title}, "template": _template(), "height": 260 + 45 * n_tiers, "showlegend": False,
              "bargap": 0.05, "margin": {"t": 40 if title else 10, "b": 40, "l": 70, "r": 60},
              "xaxis": {"title": {"text": "time (s)"}, "range": [t0, t1], "anchor": f"y{2 + n_tiers}" if n_tiers else "y"},
              "yaxis": {"domain": [spec_bottom, 1], "tickvals": ticks, "title": {"text": "Hz"},
                        "ticktext": [f"{freqs[i] / 1000:.1f}k" for i in ticks]},
              "yaxis2": {"overlaying": "y", "side": "right", "range": [0, max(top, 1e-6) * 1.1], "showgrid": False,
                         "title": {"text": "activation"}}}
    for i in range(n_tiers):
        hi = spec_bottom - gap - i * (tier_h + gap)
        layout[f"yaxis{3 + i}"] = {"domain": [max(hi - tier_h, 0), hi], "showgrid": False, "fixedrange": True}
    if marker is not None:
        layout["shapes"] = [{"type": "rect", "xref": "x", "yref": "y domain", "x0": marker[0], "x1": marker[1],
                             "y0": 0, "y1": 1, "fillcolor": "rgba(255,255,255,0.25)", "line": {"width": 0}}]
    from _plotly_utils.utils import convert_to_base64  # numpy arrays as typed arrays, as plotly's Figure does

    for trace in data[:2]:  # the numeric traces (tier rows are short label lists)
        convert_to_base64(trace)
    return {"data": data, "layout": layout}


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


def token_patch_figure(offsets_s: np.ndarray, patch: np.ndarray, title: str = "",
                       centre_hz: np.ndarray | None = None) -> go.Figure:
    """Average cochleagram ``[len(offsets), channels]`` around a token's occurrences (offset 0)."""
    fig = go.Figure(go.Heatmap(x=offsets_s * 1000, z=np.asarray(patch).T, colorscale="Viridis",
                               hovertemplate="%{x:.0f} ms, channel %{y}: %{z:.2f}<extra></extra>"))
    fig.add_vline(x=0, line={"color": "white", "dash": "dot"})
    fig.update_layout(title=title, xaxis_title="time from the token (ms)", yaxis_title="channel",
                      template=TEMPLATE, height=320, margin={"t": 40})
    if centre_hz is not None and len(centre_hz) == np.shape(patch)[1]:
        ticks = np.linspace(0, len(centre_hz) - 1, 6).astype(int)
        fig.update_yaxes(tickvals=ticks, ticktext=[f"{centre_hz[i]:.0f}" for i in ticks], title_text="Hz")
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


def _snr_order(condition: str):
    """Sort key of a condition name: by its SNR (``noise_5db`` before ``noise_10db``), then by name."""
    import re

    m = re.search(r"(-?\d+(?:\.\d+)?)db", condition)
    return (0, float(m.group(1)), condition) if m else (1, 0.0, condition)


def condition_layers_figure(table: pd.DataFrame, title: str = "", yaxis: str = "",
                            baseline: pd.Series | None = None, baseline_name: str = "majority") -> go.Figure:
    """One line per condition across layers: ``table`` is ``hook x condition`` (layer order) as
    :func:`apps.data_conditions.layer_table` gives it; ``baseline`` (per hook) is drawn dotted grey.
    Clean-referenced conditions (CKA) have no ``clean`` column; an enhanced one (``COND+ENH``) has its noisy
    condition's colour and its enhancer's dash pattern."""
    if table.empty:
        return empty_figure(f"{title}: no rows in this run")
    x = [short_hook(str(h)) for h in table.index]
    # a noisy condition and its enhanced versions share a colour (the same in every figure of a run);
    # each enhancer has its own dash pattern; clean is a thick dark line
    table = table.copy()
    table.columns = [str(c) for c in table.columns]
    conds = sorted(table.columns, key=lambda c: (c != "clean", _snr_order(c.split("+", 1)[0]), c))
    bases = sorted({c.split("+", 1)[0] for c in conds if c != "clean"}, key=_snr_order)
    enhancers = sorted({c.split("+", 1)[1] for c in conds if "+" in c})
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    dashes = ["dash", "dot", "dashdot", "longdash"]
    fig = go.Figure()
    for cond in conds:
        base, _, enh = cond.partition("+")
        line = {"color": "#222", "width": 3} if cond == "clean" else {
            "color": palette[bases.index(base) % len(palette)], "width": 2,
            "dash": dashes[enhancers.index(enh) % len(dashes)] if enh else "solid"}
        fig.add_trace(go.Scatter(x=x, y=table[cond].to_numpy(dtype=float), mode="lines+markers", name=cond, line=line))
    if baseline is not None and len(baseline):
        fig.add_trace(go.Scatter(x=x, y=baseline.reindex(table.index).to_numpy(dtype=float), mode="lines",
                                 name=baseline_name, line={"dash": "dot", "color": "#999"}))
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title=yaxis, template=TEMPLATE, height=380,
                      legend={"orientation": "h", "y": -0.25}, margin={"t": 50, "b": 10})
    return fig


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


def pareto_figure(sweep: pd.DataFrame | None, refs: Mapping[str, Mapping] | None = None, chosen: Mapping | None = None,
                  title: str = "") -> go.Figure:
    """Two panels, never one axis for both: left the dev-split sweep (hallucination rate vs WER, hover
    shows the settings), right the held-out arms (``refs``: baseline, gates, every other evaluated
    method or condition, ``{name: {"wer", "hallucination_rate"}}``, and the chosen setting
    ``chosen`` as a star). Built without per-property validation, like :func:`activation_figure`."""
    data = []
    if sweep is not None and len(sweep):
        settings = [c for c in sweep.columns if c not in ("wer", "hallucination_rate")]
        hover = [", ".join(f"{c}={v}" for c, v in zip(settings, vals))
                 for vals in sweep[settings].astype(str).itertuples(index=False)] if settings else None
        data.append({"type": "scatter", "x": sweep["wer"].to_numpy(), "y": sweep["hallucination_rate"].to_numpy(),
                     "mode": "markers", "name": "sweep", "text": hover, "xaxis": "x", "yaxis": "y",
                     "hovertemplate": "dev: WER %{x:.3f}, halluc. %{y:.3f}<br>%{text}<extra></extra>",
                     "marker": {"size": 9, "color": "#1f77b4", "opacity": 0.7}})
    symbols = iter(["diamond", "square", "cross", "x", "triangle-up", "triangle-down", "pentagon", "hexagon",
                    "star-triangle-up", "bowtie"])
    for name, r in (refs or {}).items():
        if isinstance(r, Mapping) and r.get("wer") is not None and r.get("hallucination_rate") is not None:
            data.append({"type": "scatter", "x": [r["wer"]], "y": [r["hallucination_rate"]], "mode": "markers",
                         "name": name, "xaxis": "x2", "yaxis": "y2",
                         "hovertemplate": f"held-out {name}: WER %{{x:.3f}}, halluc. %{{y:.3f}}<extra></extra>",
                         "marker": {"size": 14, "symbol": next(symbols, "circle"), "opacity": 0.85}})
    if chosen and chosen.get("wer") is not None:
        data.append({"type": "scatter", "x": [chosen["wer"]], "y": [chosen["hallucination_rate"]], "mode": "markers",
                     "name": "steered", "xaxis": "x2", "yaxis": "y2",
                     "hovertemplate": "held-out steered: WER %{x:.3f}, halluc. %{y:.3f}<extra></extra>",
                     "marker": {"size": 18, "symbol": "star", "color": "orange"}})
    note = {"showarrow": False, "xref": "paper", "yref": "paper", "y": 1.0, "yanchor": "bottom",
            "font": {"size": 13}}
    layout = {"title": {"text": title}, "template": _template(), "height": 440,
              "xaxis": {"title": {"text": "WER (dev clips)"}, "domain": [0, 0.45]},
              "yaxis": {"title": {"text": "hallucination rate (dev)"}},
              "xaxis2": {"title": {"text": "WER (held-out clips)"}, "domain": [0.55, 1], "anchor": "y2"},
              "yaxis2": {"title": {"text": "hallucination rate (held-out)"}, "anchor": "x2"},
              "annotations": [{**note, "x": 0.225, "text": "dev sweep (settings chosen here)"},
                              {**note, "x": 0.775, "text": "held-out evaluation (eval/eval.json)"}],
              "legend": {"orientation": "h", "y": -0.22}}
    return go.Figure({"data": data, "layout": layout}, _validate=False)
