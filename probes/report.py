"""Write sweep results: CSV/JSON tables and plotly HTML figures (all writes atomic).

Files in ``out``:

- ``folds.csv`` (hook x fold), ``summary.csv`` and ``summary.json`` (per hook mean/std,
  config, best hook);
- ``layers.html``: accuracy, majority baseline, shuffled-label and control-task accuracy
  across layers with error bars (std over folds), and selectivity below it;
- ``confusion.html`` / ``confusion.csv``: the best layer's confusion matrix (summed over
  test folds; the figure is row-normalised); ``confusion_layers.csv``: every layer's, one block
  of rows per ``hook`` (columns ``hook``, ``true``, then the predicted classes);
- ``topk.csv`` / ``topk.html`` when an SAE top-k curve is given.

The HTML files load ``plotly.min.js`` from the same folder so they open offline.

Example
-------
>>> paths = write_report(result, "work/probes/phones")     # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.atomic import atomic_path, write_json, write_text


def _atomic_csv(df: pd.DataFrame, path: Path) -> Path:
    return write_text(path, df.to_csv(index=False))


def _atomic_html(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:  # plotly.min.js lands next to it: same folder
        fig.write_html(str(tmp), include_plotlyjs="directory", full_html=True)
    return path


def _clean(v: Any) -> Any:
    """JSON-safe values: numpy scalars to Python, NaN to None."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def short_hook(hook: str) -> str:
    """``encoder.blocks.3.hook_resid_post`` -> ``blocks.3.resid_post`` (axis labels)."""
    return hook.replace("encoder.", "").replace("hook_", "")


def layer_figure(summary: pd.DataFrame, title: str = ""):
    """Accuracy and controls across layers (error bars: std over folds) with selectivity beneath."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = [short_hook(h) for h in summary["hook"]]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06,
                        subplot_titles=("accuracy", "selectivity (accuracy - control-task accuracy)"))
    series = [
        ("accuracy", "probe accuracy", "solid"),
        ("majority", "majority baseline", "dot"),
        ("shuffled_accuracy", "shuffled-label control", "dash"),
        ("control_accuracy", "control task (Hewitt & Liang)", "dashdot"),
    ]
    for col, name, dash in series:
        if col not in summary or summary[col].isna().all():
            continue
        err = summary.get(f"{col}_std")
        fig.add_trace(go.Scatter(x=x, y=summary[col], name=name, mode="lines+markers", line={"dash": dash},
                                 error_y=None if err is None else {"type": "data", "array": err.fillna(0)}),
                      row=1, col=1)
    if "selectivity" in summary and not summary["selectivity"].isna().all():
        fig.add_trace(go.Bar(x=x, y=summary["selectivity"], name="selectivity",
                             error_y={"type": "data", "array": summary["selectivity_std"].fillna(0)}), row=2, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_layout(title=title, height=700, template="plotly_white", legend={"orientation": "h", "y": -0.15})
    return fig


def confusion_figure(conf: np.ndarray, classes: list[str], title: str = ""):
    """Row-normalised confusion matrix heatmap (rows: true class, columns: predicted)."""
    import plotly.graph_objects as go

    conf = np.asarray(conf, dtype=float)
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    labels = [str(c) for c in classes]
    fig = go.Figure(go.Heatmap(z=norm, x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1,
                               customdata=conf, hovertemplate="true %{y}<br>pred %{x}<br>%{z:.2f} (%{customdata:.0f})"))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      height=max(400, 18 * len(labels) + 150), width=max(500, 18 * len(labels) + 250))
    return fig


def topk_figure(topk: pd.DataFrame, title: str = ""):
    """SAE top-k feature probing: accuracy against k (log axis), one line per hook, std over folds."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for hook, df in topk.groupby("hook", sort=False):
        g = df.groupby("k")["accuracy"]
        fig.add_trace(go.Scatter(x=g.mean().index, y=g.mean(), error_y={"type": "data", "array": g.std().fillna(0)},
                                 mode="lines+markers", name=short_hook(str(hook))))
    fig.update_layout(title=title, xaxis_type="log", xaxis_title="k (top features)", yaxis_title="accuracy",
                      template="plotly_white")
    return fig


def write_report(result, out: str | os.PathLike, topk: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write tables and figures of a :class:`~probes.sweep.SweepResult` to ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = result.config.get("target", "")
    paths = {
        "folds": _atomic_csv(result.folds, out / "folds.csv"),
        "summary": _atomic_csv(result.summary, out / "summary.csv"),
    }
    best = result.best_hook
    doc = {"config": result.config, "best_hook": best, "classes": [str(c) for c in result.classes],
           "summary": result.summary.to_dict(orient="records")}
    paths["summary_json"] = write_json(out / "summary.json", _clean(doc), indent=2)
    paths["layers_html"] = _atomic_html(layer_figure(result.summary, f"{target} probe across layers"),
                                        out / "layers.html")
    conf = result.confusion[best]
    paths["confusion"] = _atomic_csv(conf.rename_axis("true").reset_index(), out / "confusion.csv")
    paths["confusion_html"] = _atomic_html(
        confusion_figure(conf.to_numpy(), list(conf.index), f"{target}: confusion at {short_hook(best)}"),
        out / "confusion.html")
    paths["confusion_layers"] = _atomic_csv(pd.concat(
        [c.rename_axis("true").reset_index().assign(hook=h) for h, c in result.confusion.items()], ignore_index=True
    ).pipe(lambda d: d[["hook", *[c for c in d.columns if c != "hook"]]]), out / "confusion_layers.csv")
    if topk is not None and len(topk):
        paths["topk"] = _atomic_csv(topk, out / "topk.csv")
        paths["topk_html"] = _atomic_html(topk_figure(topk, f"{target}: SAE top-k feature probing"),
                                          out / "topk.html")
    return paths
