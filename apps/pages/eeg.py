"""EEG page (``/eeg``): layer curves of encoding r with the acoustic baselines, per-channel r
(and the run's topomaps), TRF kernels, and the per-feature correlation table with corrected
p-values, from ``neuro/NAME/`` as :mod:`neuro` writes it (``summary.csv``, ``layers.csv``,
``features.csv``, ``kernels/SET.npy``, ``topomaps/SET.png``, ``neuro.json``; only ``summary.csv``
is required). A group run (``workbench neuro fit`` with several recordings or ``--bids``) has the same
files at its top (the group's view: r = mean over subjects, p from sign flips across subjects) plus
``group/partition.csv``, ``group/ceiling.csv`` and ``group/layer_tests.csv``; a single run has
``partition.csv``, ``layer_tests.csv`` and, with repeated clips, ``ceiling.csv``. The page states the
number of null draws (or sign flips), the smallest reachable p and the correction; SAE feature ids
link to the features page; the TRF is a channel x lag image with a channel picker.
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


#: the layer curve's statistic: ``r_responsive`` (mean r over the channels significant for some set:
#: what the demo and README rank by) when the run has it, else ``r_mean`` (mean over all channels)
STATISTICS = {"r_responsive": "r on responsive channels", "r_mean": "r on all channels"}


def curve_statistic(df: pd.DataFrame, want: str | None = None) -> str | None:
    """The column of ``layers.csv`` the curve shows: ``want`` when present with a finite value, else
    ``r_responsive`` when finite (a run with responsive channels), else ``r_mean`` / ``r`` / ..."""
    def usable(c):
        return c in df.columns and np.isfinite(pd.to_numeric(df[c], errors="coerce")).any()
    if want and usable(want):
        return want
    return next((c for c in ("r_responsive", "r_mean", "r", "mean_r", "score") if usable(c)),
                _first(df, ("r_mean", "r", "mean_r", "score")))


def layer_table(df: pd.DataFrame, statistic: str | None = None) -> tuple[pd.DataFrame, dict]:
    """``layers.csv`` as ``(model rows: layer, r[, r_std], {acoustic baseline: r})``; ``rows.attrs
    ["statistic"]`` names the column used (:func:`curve_statistic` of ``statistic``).

    neuro's layout: ``feature``, ``kind`` (``acoustic`` | ``layer`` | ``sae``), ``r_mean``, ``r_sem``,
    ``r_responsive``, ``order``; older or hand-made tables with ``layer``/``hook`` and ``r``/``r_std``
    work too, with baselines marked by ``kind`` or named after an acoustic feature, and ``baseline_*``
    columns. ``r_sem`` (a standard error of the all-channel mean) is drawn with ``r_mean`` only."""
    name = _first(df, ("feature", "layer", "hook", "name"))
    r = curve_statistic(df, statistic)
    if name is None or r is None:
        raise PartError(f"layers.csv has columns {list(df.columns)}: expected a layer/feature column and r_mean or r")
    if "order" in df:
        df = df.sort_values("order")
    kind = _first(df, ("kind", "type", "source"))
    is_base = df[kind].astype(str).str.contains("acoustic|baseline", case=False) if kind else \
        df[name].astype(str).str.lower().str.startswith(ACOUSTIC)
    base = {str(n): float(v) for n, v in zip(df.loc[is_base, name], df.loc[is_base, r])}
    base.update({c.removeprefix("baseline_"): float(df[c].mean()) for c in df.columns if c.startswith("baseline_")})
    std = _first(df, ("r_sem", "r_std", "std", "r_sd")) if r != "r_responsive" else None
    if std is None and r != "r_responsive" and {"r_ci_low", "r_ci_high"} <= set(df.columns):  # a group run: 95 % interval across subjects
        df = df.assign(r_ci_half=(df["r_ci_high"] - df["r_ci_low"]) / 2)
        std = "r_ci_half"
    rows = df.loc[~is_base, [name, r] + ([std] if std else [])]
    rows.columns = ["layer", "r"] + (["r_std"] if std else [])
    rows = rows.reset_index(drop=True)
    rows.attrs["statistic"] = r
    return rows, base


def layers_figure(df: pd.DataFrame, stat: str | None, layer: str | None, name: str):
    """The layer curve of ``stat`` (:func:`curve_statistic`) with the other statistic beside it (dotted),
    so a curve on responsive channels is never read without the all-channel mean, and vice versa."""
    rows, base = layer_table(df, stat)
    used = rows.attrs["statistic"]
    n = pd.to_numeric(df.get("n_responsive", pd.Series(dtype=float)), errors="coerce").max()
    what = (f"mean r over the {int(n)} responsive channels (significant for some set)"
            if used == "r_responsive" and np.isfinite(n) else "mean r over all channels" if used == "r_mean" else used)
    fig = figures.eeg_layers_figure(rows, base, layer, f"{name}: encoding r across layers ({what})")
    other = next((c for c in STATISTICS if c != used and curve_statistic(df, c) == c), None)
    if other is not None:
        o = layer_table(df, other)[0]
        fig.add_scatter(x=[figures.short_hook(str(h)) for h in o["layer"]], y=o["r"], mode="lines+markers",
                        name=STATISTICS[other], line={"dash": "dot", "color": "#7f7f7f"})
    fig.update_layout(yaxis_title=f"encoding r (held-out): {STATISTICS.get(used, used)}")
    return fig


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
        html.Div(id="eeg-status"), html.Div(id="eeg-stats", className="wb-note"),
        dcc.RadioItems(id="eeg-stat", options=[{"label": v, "value": k} for k, v in STATISTICS.items()],
                       value="r_responsive", inline=True),
        dcc.Graph(id="eeg-layers", config={"displayModeBar": False}),
        html.H3("Variance partition (banded ridge: acoustic baseline + each set)"),
        dcc.Graph(id="eeg-partition", config={"displayModeBar": False}),
        html.H3("Layer comparisons (paired tests)"), html.Div(id="eeg-tests"),
        html.H3("Noise ceiling"), dcc.Graph(id="eeg-ceiling", config={"displayModeBar": False}),
        html.H3("Per-channel r"), dcc.Graph(id="eeg-channels", config={"displayModeBar": False}),
        html.Div(id="eeg-images", className="wb-images"),
        html.H3("TRF kernels"),
        html.Div([picker("eeg-trf", [], None, "kernel file"),
                  picker("eeg-trf-channels", [], None, "channels (empty: all)", multi=True)], className="wb-row"),
        dcc.Graph(id="eeg-trf-graph", config={"displayModeBar": False}),
        html.H3("Per-feature correlations (features.csv, else summary.csv; p_fdr: Benjamini-Hochberg)"), html.Div(id="eeg-table"),
    ])


def stats_statement(meta: dict) -> str:
    """What the p-values of a run rest on: draws (or sign flips), the smallest reachable p, the correction."""
    if meta.get("group"):
        n, corr = meta.get("n_sign_flips"), "; ".join(meta.get("corrections") or [])
        return (f"Group of {len(meta.get('subjects') or [])} subjects: sign-flip test across subjects "
                f"({n} flips{', exact' if meta.get('exact') else ''}; smallest reachable p "
                f"{meta.get('min_p') or float('nan'):.2g}), {meta.get('tail', 'one-sided')}; corrections: {corr}. "
                "Error bars: 95 % interval across subjects.")
    st = meta.get("statistics") or {}
    n = st.get("n_draws", meta.get("n_draws"))
    if n is None:
        return ""
    if not n:
        return "No null drawn (--draws 0): no p-values."
    return (f"{n} null draws ({st.get('null', 'circular shifts')}); smallest reachable p {1 / (int(n) + 1):.2g}; "
            f"correction: {st.get('correction', 'Benjamini-Hochberg')}. Error bars: SE across trials.")


def partition_figure(part: pd.DataFrame | None, title: str = ""):
    """Stacked bars per feature set: unique R^2 of the set, of the acoustic baseline, and shared."""
    import plotly.graph_objects as go

    if part is None or part.empty or "unique_set" not in part:
        return figures.empty_figure("no partition.csv in this run (acoustic sets only, or --no-delta-r2)")
    m = part.groupby("feature", sort=False)[["unique_set", "unique_acoustic", "shared"]].mean()
    fig = go.Figure([go.Bar(x=list(m.index), y=m[c], name=n) for c, n in
                     [("unique_set", "unique to the set"), ("shared", "shared"),
                      ("unique_acoustic", "unique to the acoustic baseline")]])
    fig.update_layout(barmode="relative", title=title, yaxis_title="held-out R^2 (mean over channels)",
                      template="plotly_white", height=340, legend={"orientation": "h", "y": -0.3})
    return fig


def ceiling_figure(ceiling: pd.DataFrame | None, title: str = ""):
    import plotly.graph_objects as go

    if ceiling is None or ceiling.empty:
        return figures.empty_figure("no ceiling: no clip was heard more than once (or by several subjects)")
    fig = go.Figure(go.Bar(x=ceiling["channel"].astype(str), y=ceiling["r_ceiling"], name="r ceiling"))
    fig.update_layout(title=title, yaxis_title="correlation ceiling sqrt(explainable variance)",
                      template="plotly_white", height=300)
    return fig


def trf_image(lags_s: np.ndarray, k: np.ndarray, chans: list[str], picked, title: str):
    """Channel x lag image of the kernels (``k [lags, channels]``), limited to ``picked`` channels."""
    import plotly.graph_objects as go

    idx = [chans.index(c) for c in (picked or []) if c in chans] or list(range(len(chans)))
    z = k[:, idx].T
    lim = float(np.abs(z).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=z, x=np.asarray(lags_s) * 1000, y=[chans[i] for i in idx], colorscale="RdBu_r",
                               zmin=-lim, zmax=lim, colorbar={"title": "weight"}))
    fig.update_layout(title=title, xaxis_title="lag (ms)", yaxis_title="channel", template="plotly_white",
                      height=max(300, 14 * len(idx) + 120))
    return fig


def _extra(ws: Workspace, run: dict, name: str, key: str) -> pd.DataFrame | None:
    """A run's optional table ``key`` (``partition``, ``ceiling``, ``layer_tests``) at the path its
    ``neuro.json`` gives inside the run folder (``group/...`` for a group run)."""
    rel = (run["meta"].get("files") or {}).get(key) or f"{key}.csv"
    base = run["path"].resolve()
    path = (base / str(rel)).resolve()
    if not path.is_relative_to(base) or path.suffix != ".csv" or not path.is_file():
        return None
    return ws.table(path, f"neuro {name}")


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
                  Input("eeg-layer", "value"), Input("eeg-stat", "value"), State("eeg-run", "value"),
                  prevent_initial_call=True)
    @guarded(2)
    def choose_layer(layer, stat, name):
        run = ws.neuro(name)
        if run["layers"] is None:
            return "", figures.empty_figure("no layers.csv")
        return "", layers_figure(run["layers"], stat, layer, name)

    @app.callback(Output("eeg-status", "children", allow_duplicate=True), Output("eeg-channels", "figure"),
                  Input("eeg-feature", "value"), State("eeg-run", "value"), prevent_initial_call=True)
    @guarded(2)
    def choose_feature(feature, name):
        s = ws.neuro(name)["summary"]
        rows = s[s["feature"].astype(str) == str(feature)]
        return "", figures.eeg_channels_figure(rows, f"{feature}: r per channel")

    @app.callback(Output("eeg-status", "children", allow_duplicate=True), Output("eeg-trf-graph", "figure"),
                  Input("eeg-trf", "value"), Input("eeg-trf-channels", "value"), State("eeg-run", "value"),
                  prevent_initial_call=True)
    @guarded(2)
    def choose_trf(key, picked, name):
        run = ws.neuro(name)
        if key not in run["trf"]:
            return "", figures.empty_figure("no TRF kernels (.npy) in this run")
        lags, k, what = trf_axes(run["trf"][key], run["meta"])
        chans = run["meta"].get("channels")
        chans = [str(c) for c in chans] if chans is not None and len(chans) == k.shape[1] else \
            [f"ch{i}" for i in range(k.shape[1])]
        return "", trf_image(lags, k, chans, picked, f"{key}: TRF kernels, channel x lag ({what})")

    @app.callback(Output("eeg-status", "children", allow_duplicate=True), Output("eeg-stats", "children"),
                  Output("eeg-partition", "figure"), Output("eeg-ceiling", "figure"), Output("eeg-tests", "children"),
                  Input("eeg-run", "value"), prevent_initial_call="initial_duplicate")
    @guarded(5)
    def run_extras(name):
        run = ws.neuro(name)
        part, ceil, tests = (_extra(ws, run, name, k) for k in ("partition", "ceiling", "layer_tests"))
        tests_view = message("no layer_tests.csv in this run", "info") if tests is None or tests.empty else \
            dash_table.DataTable(data=tests.round(4).to_dict("records"), columns=[{"name": c, "id": c} for c in tests],
                                 sort_action="native", page_size=10, style_cell={"fontSize": 12}, id="eeg-tests-table")
        return ("", stats_statement(run["meta"]), partition_figure(part, f"{name}: variance partition"),
                ceiling_figure(ceil, f"{name}: noise ceiling per channel"), tests_view)

    @app.callback(Output("eeg-trf-channels", "options"), Output("eeg-trf-channels", "value"),
                  Input("eeg-run", "value"), prevent_initial_call=True)
    def trf_channels(name):
        try:
            chans = ws.neuro(name)["meta"].get("channels") or []
        except Exception:  # the run's own callbacks show the error
            chans = []
        return [str(c) for c in chans], []
