"""EEG page (``/eeg``): layer curves of encoding r with the acoustic baselines, per-channel r
(and the run's topomaps), TRF kernels, and the per-feature correlation table with corrected
p-values, from ``neuro/NAME/`` as :mod:`neuro` writes it (``summary.csv``, ``layers.csv``,
``features.csv``, ``kernels/SET.npy``, ``topomaps/SET.png``, ``neuro.json``; only ``summary.csv``
is required).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from dash import Input, Output, State, dash_table, dcc, html

from apps import figures
from apps.data import PartError, Workspace
from apps.pages.common import follow_url, guarded, link_sae_features, message, picker, url_choice, url_location

PATH, TITLE = "/eeg", "EEG"
ACOUSTIC = ("envelope", "spectrogram", "mel", "cochleagram", "onset", "acoustic", "baseline")


def _first(df: pd.DataFrame, names) -> str | None:
    return next((c for c in names if c in df.columns), None)


def layer_table(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """``layers.csv`` as ``(model rows: layer, r[, r_std], {acoustic baseline: r})``.

    neuro's layout: ``feature``, ``kind`` (``acoustic`` | ``layer`` | ``sae``), ``r_mean``, ``r_sem``,
    ``order``; older or hand-made tables with ``layer``/``hook`` and ``r``/``r_std`` work too, with
    baselines marked by ``kind`` or named after an acoustic feature, and ``baseline_*`` columns."""
    name = _first(df, ("feature", "layer", "hook", "name"))
    r = _first(df, ("r_mean", "r", "mean_r", "score"))
    if name is None or r is None:
        raise PartError(f"layers.csv has columns {list(df.columns)}: expected a layer/feature column and r_mean or r")
    if "order" in df:
        df = df.sort_values("order")
    kind = _first(df, ("kind", "type", "source"))
    is_base = df[kind].astype(str).str.contains("acoustic|baseline", case=False) if kind else \
        df[name].astype(str).str.lower().str.startswith(ACOUSTIC)
    base = {str(n): float(v) for n, v in zip(df.loc[is_base, name], df.loc[is_base, r])}
    base.update({c.removeprefix("baseline_"): float(df[c].mean()) for c in df.columns if c.startswith("baseline_")})
    std = _first(df, ("r_sem", "r_std", "std", "r_sd"))
    rows = df.loc[~is_base, [name, r] + ([std] if std else [])]
    rows.columns = ["layer", "r"] + (["r_std"] if std else [])
    return rows.reset_index(drop=True), base


def trf_axes(arr: np.ndarray, meta: dict) -> tuple[np.ndarray, np.ndarray, str]:
    """``(lags_s, kernels [lags, channels], what)`` of a TRF file.

    The lag axis is the one of ``len(meta["kernel_lags_s"])`` (or ``lags_s``) when given, else the
    last (MNE's ``ReceptiveField.coef_`` is ``[channels, inputs, lags]``). Several inputs per
    channel (a layer's PCA components) are shown as their root-mean-square per channel."""
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 0 or arr.size == 0:
        raise PartError("a TRF file holds no kernel")
    lags = meta.get("kernel_lags_s", meta.get("lags_s"))
    if lags is not None and len(lags) in arr.shape:
        axis = arr.ndim - 1 - arr.shape[::-1].index(len(lags))
    else:
        axis = arr.ndim - 1
        sf, tmin = meta.get("sfreq"), meta.get("tmin", 0.0)
        lags = tmin + np.arange(arr.shape[axis]) / sf if sf else np.arange(arr.shape[axis], dtype=float)
    k = np.moveaxis(arr, axis, -1)  # [..., lags]
    what = "weight"
    if k.ndim == 3 and k.shape[1] == 1:
        k = k[:, 0]
    elif k.ndim == 3:
        k, what = np.sqrt((k ** 2).mean(axis=1)), f"RMS weight over {k.shape[1]} inputs"
    k = k.reshape(-1, k.shape[-1]) if k.ndim > 1 else k[None]
    return np.asarray(lags, dtype=float), k.T, what


def layout(ws: Workspace, query: dict) -> html.Div:
    runs = [p.name for p in ws.folders("neuro")]
    if not runs:
        return html.Div([html.H2(TITLE), message(f"no neural results in {ws.root / 'neuro'}: run the neuro "
                                                 "encoding step into WORKSPACE/neuro/NAME", "warn")])
    run, note = url_choice(query, "run", runs, "neuro run")
    return html.Div([
        html.H2(TITLE), url_location("eeg"), html.Div(note, id="eeg-url-note"),
        dcc.Store(id="eeg-want-feature", data=query.get("feature") if note is None else None),
        html.Div([picker("eeg-run", runs, run, "run"), picker("eeg-layer", [], None, "layer"),
                  picker("eeg-feature", [], None, "feature", searchable=True)], className="wb-row"),
        html.Div(id="eeg-status"),
        dcc.Graph(id="eeg-layers", config={"displayModeBar": False}),
        html.H3("Per-channel r"), dcc.Graph(id="eeg-channels", config={"displayModeBar": False}),
        html.Div(id="eeg-images", className="wb-images"),
        html.H3("TRF kernels"), picker("eeg-trf", [], None, "kernel file"),
        dcc.Graph(id="eeg-trf-graph", config={"displayModeBar": False}),
        html.H3("Per-feature correlations (features.csv, else summary.csv; p_fdr: Benjamini-Hochberg)"), html.Div(id="eeg-table"),
    ])


def register(app, ws: Workspace, jobs) -> None:
    follow_url(app, "eeg", run="eeg-run", feature="eeg-feature")
    @app.callback(Output("eeg-status", "children"), Output("eeg-layer", "options"), Output("eeg-layer", "value"),
                  Output("eeg-feature", "options"), Output("eeg-feature", "value"), Output("eeg-images", "children"),
                  Output("eeg-trf", "options"), Output("eeg-trf", "value"), Output("eeg-table", "children"),
                  Input("eeg-run", "value"), State("eeg-want-feature", "data"))
    @guarded(9)
    def choose_run(name, want=None):
        run = ws.neuro(name)
        s = run["summary"]
        missing = [c for c in ("feature", "channel", "r") if c not in s]
        if missing:
            raise PartError(f"neuro {name}: summary.csv lacks columns {missing} (has {list(s.columns)})")
        layers = layer_table(run["layers"])[0] if run["layers"] is not None else None
        lopts = [] if layers is None else [str(v) for v in layers["layer"]]
        best_layer = None if layers is None else str(layers.loc[layers["r"].idxmax(), "layer"])
        feats = s.groupby("feature")["r"].max().sort_values(ascending=False)
        fopts = [{"label": f"{f} (max r {r:.3f})", "value": str(f)} for f, r in feats.items()]
        imgs = [html.Img(src=u, className="wb-img", alt=u.rsplit("/", 1)[-1]) for u in run["images"]]
        corr = run["features"] if run["features"] is not None else s  # features.csv: per-feature correlations
        records, cols = link_sae_features(ws, corr.round(4), run["meta"])  # f1234 -> its feature page
        table = dash_table.DataTable(data=records, columns=cols, markdown_options={"link_target": "_self"},
                                     sort_action="native", filter_action="native", page_size=15,
                                     sort_by=[{"column_id": "p_fdr" if "p_fdr" in corr else "r",
                                               "direction": "asc" if "p_fdr" in corr else "desc"}],
                                     style_cell={"fontSize": 12}, id="eeg-corr-table")
        trf = sorted(run["trf"])
        note = "" if layers is not None else message("no layers.csv in this run: no layer curve", "info")
        fvalue, bad = url_choice({"feature": want} if want else {}, "feature", [o["value"] for o in fopts], "feature set")
        note = bad or note
        return (note, lopts, best_layer, fopts, fvalue, imgs, trf,
                trf[0] if trf else None, table)

    @app.callback(Output("eeg-status", "children", allow_duplicate=True), Output("eeg-layers", "figure"),
                  Input("eeg-layer", "value"), State("eeg-run", "value"), prevent_initial_call=True)
    @guarded(2)
    def choose_layer(layer, name):
        run = ws.neuro(name)
        if run["layers"] is None:
            return "", figures.empty_figure("no layers.csv")
        rows, base = layer_table(run["layers"])
        return "", figures.eeg_layers_figure(rows, base, layer, f"{name}: encoding r across layers")

    @app.callback(Output("eeg-status", "children", allow_duplicate=True), Output("eeg-channels", "figure"),
                  Input("eeg-feature", "value"), State("eeg-run", "value"), prevent_initial_call=True)
    @guarded(2)
    def choose_feature(feature, name):
        s = ws.neuro(name)["summary"]
        rows = s[s["feature"].astype(str) == str(feature)]
        return "", figures.eeg_channels_figure(rows, f"{feature}: r per channel")

    @app.callback(Output("eeg-status", "children", allow_duplicate=True), Output("eeg-trf-graph", "figure"),
                  Input("eeg-trf", "value"), State("eeg-run", "value"), prevent_initial_call=True)
    @guarded(2)
    def choose_trf(key, name):
        run = ws.neuro(name)
        if key not in run["trf"]:
            return "", figures.empty_figure("no TRF kernels (.npy) in this run")
        lags, k, what = trf_axes(run["trf"][key], run["meta"])
        chans = run["meta"].get("channels")
        chans = chans if chans is not None and len(chans) == k.shape[1] else None
        return "", figures.trf_figure(lags, k, chans, f"{key}: TRF kernels ({what})")
