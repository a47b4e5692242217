"""Conditions page (``/conditions?run=NAME&clip=CLEAN_ID``): one utterance of a ``workbench conditions``
run heard clean, noisy (each condition) and enhanced (each enhancer) side by side, each with the ASR
model's transcript, its word errors against the reference and its SI-SNR. The per-layer curves of the
run are on the Probes page (``/probes?conditions=NAME``). Audio is served from inside the workspace
only (``/files/...``); run and clip names go through ``Workspace.part_dir`` and the run's own list."""
from __future__ import annotations

from urllib.parse import urlencode

from dash import Input, Output, State, dcc, html

from apps.data import Workspace
from apps.pages.common import follow_url, guarded, message, picker, url_choice, url_location
from workbench.text import word_errors

PATH, TITLE = "/conditions", "Conditions"


def layout(ws: Workspace, query: dict) -> html.Div:
    runs = [p.name for p in ws.folders("conditions")]
    if not runs:
        return html.Div([html.H2(TITLE), message(f"no conditions run in {ws.root / 'conditions'}: run `workbench "
                                                 "conditions --corpus MIX --enhancers nsnet2 --out "
                                                 "WORKSPACE/conditions/NAME`", "warn")])
    run, note = url_choice(query, "run", runs, "conditions run")
    return html.Div([
        html.H2(TITLE), url_location("cond"), html.Div(note, id="cond-url-note"),
        dcc.Store(id="cond-want-clip", data=query.get("clip") if note is None else None),
        html.Div([picker("cond-run", runs, run, "conditions run"), picker("cond-clip", [], None, "utterance")],
                 className="wb-row"),
        html.Div(id="cond-status"), html.Div(id="cond-info", className="wb-info"),
        html.Div(id="cond-versions"),
    ])


def _cell(v: dict | None, **kw) -> html.Td:
    if v is None:
        return html.Td(html.Span("-", className="wb-muted"), **kw)
    what = {"clean": "clean", "noisy": v["condition"], "enhanced": f"enhanced by {v['enhancer']}"}[v["role"]]
    extra = "" if v["si_snr_db"] is None else f" · SI-SNR {v['si_snr_db']:.1f} dB"
    body = [html.Div(f"{what}{extra}", className="wb-caption")]
    body.append(html.Audio(src=v["url"], controls=True, className="wb-audio", preload="none") if v["url"]
                else message("audio missing or outside the workspace: not served", "warn"))
    if v["text"] is None:
        body.append(html.Div("no transcript in this run (rerun `workbench conditions` for transcripts.csv)",
                             className="wb-muted"))
    else:
        said = html.Div(f"“{v['text'].strip()}”", className="wb-said")
        if v["reference"]:
            e, n = word_errors(v["reference"], v["text"])
            said = html.Div([said, html.Div(f"{e} word errors / {n} words (WER {e / max(n, 1):.2f})",
                                            className="wb-muted")])
        body.append(said)
    return html.Td(body, className=f"wb-version wb-{v['role']}", **kw)


def versions_table(versions: list[dict]) -> html.Table:
    """Clean | noisy | one column per enhancer; a row per noisy condition (clean spans them all)."""
    clean = next((v for v in versions if v["role"] == "clean"), None)
    noisy = [v for v in versions if v["role"] == "noisy"]
    enhancers = list(dict.fromkeys(v["enhancer"] for v in versions if v["role"] == "enhanced"))
    enh = {(v["clip"].rsplit("+", 1)[0], v["enhancer"]): v for v in versions if v["role"] == "enhanced"}
    head = html.Tr([html.Th("clean"), html.Th("noisy")] + [html.Th(f"enhanced: {e}") for e in enhancers])
    rows = []
    for i, n in enumerate(noisy or [None]):
        cells = [] if i else [_cell(clean, rowSpan=max(len(noisy), 1))]
        cells.append(_cell(n))
        cells += [_cell(enh.get((n["clip"], e)) if n else None) for e in enhancers]
        rows.append(html.Tr(cells))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="wb-transcripts wb-conditions", id="cond-table")


def register(app, ws: Workspace, jobs) -> None:
    @app.callback(Output("cond-status", "children"), Output("cond-clip", "options"), Output("cond-clip", "value"),
                  Output("cond-info", "children"), Output("cond-url-note", "children", allow_duplicate=True),
                  Input("cond-run", "value"), State("cond-want-clip", "data"), prevent_initial_call="initial_duplicate")
    @guarded(5)
    def choose_run(name, want):
        ids = ws.condition_utterances(name)
        if not ids:
            return (message(f"conditions run {name}: its mixed corpus is not in this workspace's corpora/, so its "
                            "clips cannot be played", "warn"), [], None, "", None)
        clip, note = url_choice({"clip": want} if want else {}, "clip", ids, "utterance")
        s = ws.conditions_run(name)["summary"]
        info = html.Span([f"model {s.get('model', '?')} · enhancers {', '.join(s.get('enhancers') or []) or 'none'} · "
                          f"{len(ids)} utterances · ",
                          html.A("per-layer curves", href=f"/probes?{urlencode({'conditions': name})}")])
        return "", [{"label": i, "value": i} for i in ids], clip, info, note

    @app.callback(Output("cond-status", "children", allow_duplicate=True), Output("cond-versions", "children"),
                  Input("cond-clip", "value"), State("cond-run", "value"), prevent_initial_call=True)
    @guarded(2)
    def choose_clip(clip, name):
        if clip is None:
            return "", ""
        versions = ws.condition_versions(name, clip)
        ref = next((v["reference"] for v in versions if v["reference"]), None)
        return "", html.Div([html.Div(f"reference: “{ref}”" if ref else "no reference transcript", className="wb-info"),
                             versions_table(versions)])

    follow_url(app, "cond", run="cond-run", clip="cond-clip")
