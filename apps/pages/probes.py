"""Probes page (``/probes?run=NAME&layer=HOOK&conditions=RUN``): layer curves with baselines, controls and
selectivity (choose a layer to highlight it and see its folds and its confusion matrix), and the noise
conditions' per-layer CKA and probe robustness (:mod:`apps.pages.condition_curves`). The URL follows
the run, layer and conditions run; a bad value gets a message with the valid names."""
from __future__ import annotations

from dash import Input, Output, State, dash_table, dcc, html

from apps import figures
from apps.data import PartError, Workspace
from apps.pages.condition_curves import curves_section, register_curves
from apps.pages.common import guarded, message, picker, url_choice, url_location, url_search
from probes.report import short_hook

PATH, TITLE = "/probes", "Probes"
_NO_RUN = "no probe run in WORKSPACE/probes: run `workbench probe --cache CACHE --target phones --out WORKSPACE/probes/phones`"


def layout(ws: Workspace, query: dict) -> html.Div:
    runs = [p.name for p in ws.folders("probes")]
    if not runs and not ws.folders("conditions"):
        return html.Div([html.H2(TITLE), message(_NO_RUN, "warn")])
    run, note = url_choice(query, "run", runs, "probe run")
    return html.Div([
        html.H2(TITLE), url_location("probe"), html.Div(note, id="probe-url-note"),
        dcc.Store(id="probe-want-layer", data=query.get("layer") if note is None else None),
        html.Div([picker("probe-run", runs, run, "probe run"), picker("probe-layer", [], None, "layer")],
                 className="wb-row"),
        html.Div(id="probe-status"), html.Div(id="probe-info", className="wb-info"),
        html.Div([dcc.Graph(id="probe-layers", config={"displayModeBar": False}),
                  html.H3("Folds of the selected layer"), html.Div(id="probe-folds"),
                  dcc.Graph(id="probe-confusion", config={"displayModeBar": False})],
                 style=None if runs else {"display": "none"}),
        curves_section(ws, query),
    ])


def register(app, ws: Workspace, jobs) -> None:
    @app.callback(Output("probe-status", "children"), Output("probe-layer", "options"), Output("probe-layer", "value"),
                  Output("probe-info", "children"), Output("probe-url-note", "children", allow_duplicate=True),
                  Input("probe-run", "value"), State("probe-want-layer", "data"), prevent_initial_call="initial_duplicate")
    @guarded(5)
    def choose_run(name, want):
        if name is None and not ws.folders("probes"):
            raise PartError(_NO_RUN)
        run = ws.probe(name)
        hooks = list(run["summary"]["hook"])
        best = run["best_hook"] if run["best_hook"] in hooks else hooks[0]
        cfg = run["config"]
        info = (f"target {cfg.get('target')} · split {cfg.get('split')} · {cfg.get('folds')} folds · "
                f"best layer {short_hook(best)}")
        shorts = {short_hook(h): h for h in hooks}
        layer, note = url_choice({"layer": shorts.get(want, want)} if want else {}, "layer", hooks, "layer", best)
        return "", [{"label": short_hook(h), "value": h} for h in hooks], layer, info, note

    @app.callback(Output("probe-status", "children", allow_duplicate=True), Output("probe-layers", "figure"),
                  Output("probe-folds", "children"), Output("probe-confusion", "figure"), Input("probe-layer", "value"),
                  State("probe-run", "value"), prevent_initial_call=True)
    @guarded(4)
    def choose_layer(hook, name):
        run = ws.probe(name)
        fig = figures.probe_layers_figure(run["summary"], hook, f"{run['config'].get('target', '')} probe across layers")
        folds = run["folds"]
        if folds is None or "hook" not in folds:
            table = message("no folds.csv in this run")
        else:
            rows = folds[folds["hook"] == hook].round(4)
            table = dash_table.DataTable(data=rows.to_dict("records"), columns=[{"name": c, "id": c} for c in rows],
                                         style_cell={"fontSize": 12}, style_table={"overflowX": "auto"},
                                         id="probe-folds-table")
        conf = run["confusions"].get(hook)
        what = short_hook(hook)
        if conf is None and hook == run["best_hook"]:
            conf = run["confusion"]
        if conf is not None:
            cfig = figures.probe_confusion_figure(conf, f"confusion at {what}" +
                                                  (" (best layer)" if hook == run["best_hook"] else ""))
        else:
            cfig = figures.empty_figure(f"no confusion matrix for {what}: this run wrote only the best layer's "
                                        "(rerun `workbench probe` for confusion_layers.csv)")
        return "", fig, table, cfig

    @app.callback(Output("probe-url", "search"), Input("probe-run", "value"), Input("probe-layer", "value"),
                  State("probe-conditions", "value"), prevent_initial_call=True)
    def follow_url(name, hook, conditions):
        return url_search(run=name, layer=short_hook(hook) if hook else None, conditions=conditions)

    @app.callback(Output("probe-url", "search", allow_duplicate=True), Input("probe-conditions", "value"),
                  State("probe-run", "value"), State("probe-layer", "value"), prevent_initial_call=True)
    def follow_conditions(conditions, name, hook):
        return url_search(run=name, layer=short_hook(hook) if hook else None, conditions=conditions)

    register_curves(app, ws)
