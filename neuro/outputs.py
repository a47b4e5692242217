"""Writing a neuro run's files (the layout is documented in :mod:`neuro`'s docstring).

Every file is written atomically (``workbench.atomic``), so the app never reads half a table.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.atomic import atomic_path, write_json

__all__ = ["safe_name", "write_table", "write_kernel", "write_layers_html", "write_group_layers_html", "write_topomap",
           "write_meta"]


def safe_name(name: str) -> str:
    """A file name for a feature set (``encoder.blocks.1.hook_resid_post`` stays, ``sae:x`` -> ``sae-x``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "set"


def write_table(df: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return path


def write_kernel(kernel: np.ndarray, path: Path) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, kernel.astype(np.float32))
    return path


def write_layers_html(layers: pd.DataFrame, path: Path, title: str) -> Path:
    """Layer curve: mean r per feature set (model sets on a line, acoustic baselines as dashed
    horizontal lines), and the variance a set explains beyond the acoustic baseline below it."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("prediction r (mean over channels; bars: SE across trials)",
                                        "unique R^2 beyond the acoustic baseline (banded joint model, mean over channels)"))
    model = layers[layers["kind"] != "acoustic"]
    x = model["feature"].tolist()
    if len(model):
        fig.add_trace(go.Scatter(x=x, y=model["r_mean"], error_y=dict(type="data", array=model["r_sem"]),
                                 mode="lines+markers", name="model features"), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=model["r_max"], mode="lines+markers", name="best channel",
                                 line=dict(dash="dot")), row=1, col=1)
        fig.add_trace(go.Bar(x=x, y=model["delta_r2_mean"], name="delta R^2 vs acoustic"), row=2, col=1)
    colours = ["#d62728", "#2ca02c", "#9467bd", "#8c564b"]
    for i, (_, row) in enumerate(layers[layers["kind"] == "acoustic"].iterrows()):
        if len(model):
            fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[row["r_mean"]] * 2, mode="lines", name=row["feature"],
                                     line=dict(dash="dash", color=colours[i % len(colours)])), row=1, col=1)
        else:
            fig.add_trace(go.Bar(x=[row["feature"]], y=[row["r_mean"]], name=row["feature"]), row=1, col=1)
    fig.update_layout(title=title, height=700, template="plotly_white")
    with atomic_path(path) as tmp:  # plotly.min.js lands beside it: opens offline
        fig.write_html(str(tmp), include_plotlyjs="directory", full_html=True)
    return path


def write_topomap(values: np.ndarray, info: Any, path: Path, title: str) -> Path:
    """``mne.viz.plot_topomap`` of one value per channel, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mne
    from threadpoolctl import threadpool_limits

    fig, ax = plt.subplots(figsize=(3.2, 3.2))
    lim = float(np.max(np.abs(values))) or 1.0
    # one BLAS thread: MNE's interpolation took 1.6 s instead of 0.04 s with 2 OpenBLAS threads beside
    # another busy process on 2 cores (idle: the same)
    with threadpool_limits(1, user_api="blas"):
        im, _ = mne.viz.plot_topomap(values, info, axes=ax, show=False, cmap="RdBu_r", vlim=(-lim, lim))
    fig.colorbar(im, ax=ax, shrink=0.7, label="r")
    ax.set_title(title, fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_meta(meta: dict[str, Any], path: Path) -> Path:
    return write_json(path, meta, indent=2, default=str)


def write_group_layers_html(layers: pd.DataFrame, path: Path, title: str) -> Path:
    """Group layer curve: mean over subjects of each subject's mean r, with the 95 % interval
    across subjects (t), and the unique R^2 beyond the acoustic baseline below it."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("prediction r (mean over subjects; bars: 95 % interval across subjects)",
                                        "unique R^2 beyond the acoustic baseline (banded joint model)"))
    x = layers["feature"].tolist()
    err = dict(type="data", symmetric=False, array=layers["r_ci_high"] - layers["r_mean"],
               arrayminus=layers["r_mean"] - layers["r_ci_low"])
    fig.add_trace(go.Scatter(x=x, y=layers["r_mean"], error_y=err, mode="lines+markers", name="mean r"), row=1, col=1)
    d_err = dict(type="data", symmetric=False, array=layers["delta_r2_ci_high"] - layers["delta_r2_mean"],
                 arrayminus=layers["delta_r2_mean"] - layers["delta_r2_ci_low"])
    fig.add_trace(go.Bar(x=x, y=layers["delta_r2_mean"], error_y=d_err, name="unique R^2"), row=2, col=1)
    fig.update_layout(title=title, height=700, template="plotly_white")
    with atomic_path(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs="directory", full_html=True)
    return path
