"""Probes page (``/probes``): layer curves with baselines, controls and selectivity (choose a
layer to highlight it and see its folds), and the best layer's confusion matrix."""
from __future__ import annotations

from dash import Input, Output, State, dash_table, dcc, html

from apps import figures
from apps.data import Workspace
from apps.pages.common import guarded, message, picker
from probes.report import short_hook

PATH, TITLE = "/probes", "Probes"


def layout(ws: Workspace, query: dict) -> html.Div:
    runs = [p.name for p in ws.folders("probes")]
    if not runs:
        return html.Div([html.H2(TITLE), message(f"no probe run in {ws.root / 'probes'}: run `workbench probe "
                                                 "--cache CACHE --target phones --out WORKSPACE/probes/phones`", "warn")])
    run = query.get("run") if query.get("run") in runs else runs[0]
    return html.Div([
        html.H2(TITLE),
        html.Div([picker("probe-run", runs, run, "probe run"), picker("probe-layer", [], None, "layer")],
                 className="wb-row"),
        html.Div(id="probe-status"), html.Div(id="probe-info", className="wb-info"),
        dcc.Graph(id="probe-layers", config={"displayModeBar": False}),
        html.H3("Folds of the selected layer"), html.Div(id="probe-folds"),
        dcc.Graph(id="probe-confusion", config={"displayModeBar": False}),
    ])


def register(app, ws: Workspace, jobs) -> None:
    @app.callback(Output("probe-status", "children"), Output("probe-layer", "options"), Output("probe-layer", "value"),
                  Output("probe-info", "children"), Output("probe-confusion", "figure"), Input("probe-run", "value"))
    @guarded(5)
    def choose_run(name):
        run = ws.probe(name)
        hooks = list(run["summary"]["hook"])
        best = run["best_hook"] if run["best_hook"] in hooks else hooks[0]
        cfg = run["config"]
        info = (f"target {cfg.get('target')} · split {cfg.get('split')} · {cfg.get('folds')} folds · "
                f"best layer {short_hook(best)}")
        conf = run["confusion"]
        fig = figures.probe_confusion_figure(conf, f"confusion at {short_hook(best)} (best layer)") \
            if conf is not None else figures.empty_figure("no confusion.csv in this run")
        return "", [{"label": short_hook(h), "value": h} for h in hooks], best, info, fig

    @app.callback(Output("probe-status", "children", allow_duplicate=True), Output("probe-layers", "figure"),
                  Output("probe-folds", "children"), Input("probe-layer", "value"), State("probe-run", "value"),
                  prevent_initial_call=True)
    @guarded(3)
    def choose_layer(hook, name):
        run = ws.probe(name)
        fig = figures.probe_layers_figure(run["summary"], hook, f"{run['config'].get('target', '')} probe across layers")
        folds = run["folds"]
        if folds is None or "hook" not in folds:
            table = message("no folds.csv in this run")
        else:
            rows = folds[folds["hook"] == hook].round(4)
            table = dash_table.DataTable(data=rows.to_dict("records"), columns=[{"name": c, "id": c} for c in rows],
                                         style_cell={"fontSize": 12}, id="probe-folds-table")
        return "", fig, table
