"""The Probes page's noise-condition section: for a ``workbench conditions`` run (``conditions/NAME``),
Whisper's layerwise CKA with clean speech and the clean-trained probe's accuracy per layer, one line per
condition (noisy ``noise_5db``, enhanced ``noise_5db+nsnet2`` dashed). ``?conditions=NAME`` picks the run.

Used by :mod:`apps.pages.probes`::

    section = curves_section(ws, query)      # in layout(); pickers probe-conditions, probe-cond-metric
    register_curves(app, ws)                 # in register()
"""
from __future__ import annotations

from urllib.parse import urlencode

from dash import Input, Output, dcc, html

from apps import figures
from apps.data import PartError, Workspace
from apps.data_conditions import layer_table
from apps.pages.common import guarded, picker, url_choice

NO_RUN = ("no conditions run in WORKSPACE/conditions: run `workbench conditions --corpus MIX --enhancers nsnet2 "
          "--out WORKSPACE/conditions/NAME`")
CKA_CHOICES = [{"label": "CKA without the massive frames", "value": "cka_no_massive"},
               {"label": "CKA on all frames", "value": "cka"}]


def curves_section(ws: Workspace, query: dict) -> html.Section:
    runs = [p.name for p in ws.folders("conditions")]
    head = html.H3("Noise conditions: where do noisy and enhanced speech converge to clean?")
    run, note = url_choice(query, "conditions", runs, "conditions run")
    # without a run the same components stay (hidden) so the page's URL callback always finds its picker,
    # and the section's callback says what to run
    return html.Section([
        head, html.Div(note, id="probe-cond-note"),
        html.Div([picker("probe-conditions", runs, run, "conditions run"),
                  dcc.RadioItems(id="probe-cond-metric", options=CKA_CHOICES, value="cka_no_massive", inline=True)],
                 className="wb-row"),
        html.Div(id="probe-cond-status"), html.Div(id="probe-cond-info", className="wb-info"),
        html.Div([dcc.Graph(id="probe-cond-cka", config={"displayModeBar": False}, className="wb-half"),
                  dcc.Graph(id="probe-cond-robust", config={"displayModeBar": False}, className="wb-half")],
                 className="wb-row wb-two", style=None if runs else {"display": "none"}),
        html.Div(id="probe-cond-clips", className="wb-info"),
    ], id="probe-cond-section")


def curves(ws: Workspace, name: str, metric: str = "cka_no_massive"):
    """``(info, cka figure, robustness figure, clip links)`` of run ``name`` (pure of Dash state: tested directly)."""
    if metric not in {c["value"] for c in CKA_CHOICES}:
        metric = "cka_no_massive"
    if name is None and not ws.folders("conditions"):
        raise PartError(NO_RUN)
    run = ws.conditions_run(name)
    hooks = run["hooks"]
    label = next(c["label"] for c in CKA_CHOICES if c["value"] == metric)
    cka = figures.condition_layers_figure(layer_table(run["similarity"], hooks, metric),
                                          f"{label}, per layer (1 = same as clean)", "linear CKA with clean")
    rob = run["robustness"]
    base = None
    if rob is not None and "majority" in rob:
        base = rob.groupby("hook", sort=False)["majority"].mean()
    acc = figures.condition_layers_figure(layer_table(rob, hooks, "accuracy"), "probe trained on clean speech, "
                                          "tested per condition", "accuracy (held-out utterances)", base,
                                          "majority class")
    s = run["summary"]
    gains = ", ".join(f"{k} {v:+.1f} dB" for k, v in (s.get("si_snr_improvement_db") or {}).items())
    info = f"model {s.get('model', '?')} · {len(hooks)} layers · {s.get('clips', '?')} clips" + \
           (f" · SI-SNR improvement {gains}" if gains else "")
    if run["wer"] is not None and len(run["wer"]):
        info += " · WER " + ", ".join(f"{c} {w:.2f}" for c, w in zip(run["wer"]["condition"], run["wer"]["wer"]))
    try:
        ids = ws.condition_utterances(name)
    except Exception:  # the curves stand without the clip view
        ids = []
    links = [html.Span("listen (clean, noisy, enhanced with transcripts): ")] + [
        html.A(cid, href=f"/conditions?{urlencode({'run': name, 'clip': cid})}", className="wb-cond-link",
               style={"marginRight": "10px"}) for cid in ids[:30]] if ids else []
    return info, cka, acc, links


def register_curves(app, ws: Workspace) -> None:
    @app.callback(Output("probe-cond-status", "children"), Output("probe-cond-info", "children"),
                  Output("probe-cond-cka", "figure"), Output("probe-cond-robust", "figure"),
                  Output("probe-cond-clips", "children"),
                  Input("probe-conditions", "value"), Input("probe-cond-metric", "value"))
    @guarded(5)
    def choose_conditions(name, metric):
        return ("", *curves(ws, name, metric))
