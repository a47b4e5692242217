"""Steering page (``/steering?artifact=NAME&clip=ID``): the dev sweep and the held-out arms (every
evaluated method and condition) on separate panels, per-clip transcripts with audio players, and
live steering: pick a clip or upload one (the last action wins; the page says which is used), pick
any of the SAE's features (searchable by explanation), an edit and its strength (explained), and
Run: transcripts without and with the edit go into the session's run history with the reference,
the WER of both and an audio player. Live runs are in :mod:`apps.pages.steering_live`.

Artifacts are read from ``steering/NAME/`` through :class:`workbench.steering.Steering` and
:meth:`apps.data.Workspace.steering`.
"""
from __future__ import annotations

from collections.abc import Mapping

from dash import Input, Output, dash_table, dcc, html

from apps import figures
from apps.data import Workspace
from apps.pages import steering_live
from apps.pages.common import feature_link, guarded, message, picker, url_choice, url_location, url_search

PATH, TITLE = "/steering", "Steering"
REFS = ("baseline", "no_speech_gate", "vad_gate")


def arms_of(ev: Mapping) -> dict[str, dict]:
    """Every evaluated arm of ``eval.json`` with a WER: top-level ``{name: {...}}`` entries and the
    rows of ``methods`` / ``conditions`` (a dict by name or a list of rows naming themselves)."""
    out = {k: v for k, v in ev.items() if isinstance(v, Mapping) and "wer" in v}
    for group in ("methods", "conditions"):
        items = ev.get(group)
        if isinstance(items, Mapping):
            items = [{"name": k, **v} for k, v in items.items() if isinstance(v, Mapping)]
        for row in items if isinstance(items, list) else []:
            if isinstance(row, Mapping) and "wer" in row:
                name = str(row.get("name") or row.get("condition") or row.get("method") or f"{group} {len(out)}")
                out.setdefault(name, dict(row))
    return out


def clip_rows(ws: Workspace, clips: list[dict]) -> list:
    """One row per evaluated clip: id, domain, audio player, reference, baseline and steered text."""
    rows = []
    for c in clips:
        corpus, clip = ws.find_clip(str(c.get("id")))
        url = ws.clip_url(corpus, clip) if clip is not None else None
        player = html.Audio(src=url, controls=True, preload="none", className="wb-audio") if url else html.Span(
            "audio not in the workspace", className="wb-muted")
        rows.append(html.Tr([html.Td(str(c.get("id"))), html.Td(str(c.get("domain", ""))), html.Td(player),
                             html.Td(str(c.get("reference") or "")), html.Td(str(c.get("baseline", ""))),
                             html.Td(str(c.get("steered", "")))]))
    head = html.Tr([html.Th(h) for h in ("clip", "domain", "audio", "reference", "baseline", "steered")])
    return [html.Table([html.Thead(head), html.Tbody(rows)], className="wb-transcripts")] if rows else [
        message("eval/eval.json lists no clips")]


def layout(ws: Workspace, query: dict) -> html.Div:
    runs = [p.name for p in ws.folders("steering")]
    if not runs:
        return html.Div([html.H2(TITLE), message(f"no steering artifact in {ws.root / 'steering'}: fit one with "
                                                 "`workbench steer fit ... --out WORKSPACE/steering/NAME`", "warn")])
    q = dict(query)
    if "artifact" not in q and "run" in q:  # the older name of the parameter
        q["artifact"] = q["run"]
    run, note = url_choice(q, "artifact", runs, "steering artifact")
    return html.Div([
        html.H2(TITLE), url_location("steer"), html.Div(note, id="steer-url-note"),
        dcc.Store(id="steer-want-clip", data=q.get("clip")),
        html.Div([picker("steer-run", runs, run, "steering artifact")], className="wb-row"),
        html.Div(id="steer-status"), html.Div(id="steer-info", className="wb-info"),
        html.Div(id="steer-feature-links", className="wb-info"),
        dcc.Graph(id="steer-pareto", config={"displayModeBar": False}), html.Div(id="steer-arms"),
        html.H3("Held-out clips: baseline vs steered"), html.Div(id="steer-clips"),
        steering_live.section(),
    ])


def register(app, ws: Workspace, jobs) -> None:
    @app.callback(Output("steer-status", "children"), Output("steer-info", "children"), Output("steer-pareto", "figure"),
                  Output("steer-arms", "children"), Output("steer-clips", "children"),
                  Output("steer-feature-links", "children"), Input("steer-run", "value"))
    @guarded(6)
    def choose_run(name):
        art = ws.steering(name)
        spec, ev = art["spec"], art["eval"] or {}
        info = (f"{spec.get('model')} · {spec.get('hook')} · {spec.get('method')} {spec.get('edit')} · strength "
                f"{spec.get('strength')} ({steering_live.EDIT_HELP.get(spec.get('edit'), '')}) · gate "
                f"{spec.get('gate', 'none')} · concept {spec.get('concept')}")
        arms = arms_of(ev)
        refs = {k: v for k, v in [*((k, arms[k]) for k in REFS if k in arms), *arms.items()] if k != "steered"}
        sweep = art["sweep"]
        sweep = sweep if sweep is not None and {"wer", "hallucination_rate"} <= set(sweep.columns) else None
        pareto = figures.pareto_figure(sweep, refs, arms.get("steered"), f"{name}: dev sweep and held-out evaluation") \
            if sweep is not None or arms else figures.empty_figure("no sweep.csv and no eval/eval.json")
        rows = [{"arm": k, **{m: None if v.get(m) is None else round(float(v[m]), 3) for m in ("hallucination_rate", "wer")}}
                for k, v in arms.items()]
        arms_table = dash_table.DataTable(data=rows, columns=[{"name": c, "id": c} for c in ("arm", "hallucination_rate",
                                                                                          "wer")],
                                          style_cell={"fontSize": 12}, id="steer-arms-table") if rows else message(
            "no held-out evaluation yet (eval/eval.json)")
        ref = ws.sae_at(art["path"] / spec["sae"]) if spec.get("method") == "sae" and spec.get("sae") else None
        feats = [int(f["index"]) for f in spec.get("features") or [] if "index" in f]
        links = ["features of this artifact (ranked): "] + [x for f in feats[:30] for x in
                                                              (feature_link(ref.key if ref else None, f), " ")]
        if feats and ref is None:
            links.append(html.Span(" (its SAE is not in this workspace: no feature pages)", className="wb-muted"))
        return "", info, pareto, arms_table, clip_rows(ws, ev.get("clips") or []), links if feats else ""

    @app.callback(Output("steer-url", "search"), Input("steer-run", "value"), Input("steer-clip", "value"),
                  prevent_initial_call=True)
    def follow_url(name, clip):
        return url_search(artifact=name, clip=clip)

    steering_live.register(app, ws, jobs)
