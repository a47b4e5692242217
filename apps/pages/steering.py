"""Steering page (``/steering``): the sweep's Pareto plot (hallucination rate vs WER) with the
baseline and the gates as reference points, per-clip transcripts (baseline vs steered) with
audio players, and live steering: pick a clip or upload one, pick features and a strength, and
see the transcripts without and with the edit (the model runs in the worker thread).

Artifacts are read from ``steering/NAME/`` (``steering.json``, ``sweep.csv``, ``eval/eval.json``);
the edit itself is :class:`workbench.steering.Steering` (``with_`` + ``applied``).
"""
from __future__ import annotations

from dash import Input, Output, State, dash_table, dcc, html, no_update

from apps import figures
from apps.data import PartError, Workspace
from apps.live import MAX_UPLOAD_BYTES, decode_upload, model
from apps.pages.common import explain, guarded, message, picker, progress

PATH, TITLE = "/steering", "Steering"
REFS = ("baseline", "no_speech_gate", "vad_gate")


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
    run = query.get("run") if query.get("run") in runs else runs[0]
    return html.Div([
        html.H2(TITLE),
        html.Div([picker("steer-run", runs, run, "steering artifact")], className="wb-row"),
        html.Div(id="steer-status"), html.Div(id="steer-info", className="wb-info"),
        dcc.Graph(id="steer-pareto", config={"displayModeBar": False}), html.Div(id="steer-arms"),
        html.H3("Held-out clips: baseline vs steered"), html.Div(id="steer-clips"),
        html.H3("Live steering"),
        html.Div([picker("steer-clip", [], None, "clip", searchable=True),
                  dcc.Upload(id="steer-upload", children=html.Div("or drop / choose an audio file"),
                             max_size=MAX_UPLOAD_BYTES, className="wb-upload"),
                  picker("steer-features", [], None, "features", multi=True),
                  html.Div([html.Label("strength", htmlFor="steer-strength"),
                            dcc.Input(id="steer-strength", type="number", step=0.5, value=0.0)], className="wb-picker"),
                  html.Button("Run", id="steer-go", className="wb-button")], className="wb-row"),
        dcc.Store(id="steer-audio-name"), dcc.Store(id="steer-job"), dcc.Interval(id="steer-poll", interval=400,
                                                                                 disabled=True),
        html.Div(id="steer-live"),
    ])


def register(app, ws: Workspace, jobs) -> None:
    uploads: dict[str, object] = {}  # name -> decoded audio (kept in memory, never written to the workspace)

    @app.callback(Output("steer-status", "children"), Output("steer-info", "children"), Output("steer-pareto", "figure"),
                  Output("steer-arms", "children"), Output("steer-clips", "children"), Output("steer-clip", "options"),
                  Output("steer-clip", "value"), Output("steer-features", "options"), Output("steer-features", "value"),
                  Output("steer-strength", "value"), Input("steer-run", "value"))
    @guarded(10)
    def choose_run(name):
        art = ws.steering(name)
        spec, ev = art["spec"], art["eval"] or {}
        info = (f"{spec.get('model')} · {spec.get('hook')} · {spec.get('method')} {spec.get('edit')} · strength "
                f"{spec.get('strength')} · gate {spec.get('gate', 'none')} · concept {spec.get('concept')}")
        # reference points: the baseline and the gates first, then any other evaluated condition
        refs = {k: ev[k] for k in (*REFS, *ev) if k != "steered" and isinstance(ev.get(k), dict) and "wer" in ev[k]}
        sweep = art["sweep"]
        pareto = figures.pareto_figure(sweep, refs, ev.get("steered"), f"{name}: dev sweep") if sweep is not None \
            and {"wer", "hallucination_rate"} <= set(sweep.columns) else figures.empty_figure("no sweep.csv")
        arms = [{"arm": k, **{m: None if v.get(m) is None else round(float(v[m]), 3) for m in ("hallucination_rate", "wer")}}
                for k, v in ev.items() if isinstance(v, dict) and "wer" in v]
        arms_table = dash_table.DataTable(data=arms, columns=[{"name": c, "id": c} for c in ("arm", "hallucination_rate",
                                                                                          "wer")],
                                          style_cell={"fontSize": 12}, id="steer-arms-table") if arms else message(
            "no held-out evaluation yet (eval/eval.json)")
        clips = ev.get("clips") or []
        clip_ids = [str(c["id"]) for c in clips if c.get("id") is not None]
        feats = spec.get("features") or []
        fopts = [{"label": f"f{f['index']} (effect {f.get('effect_size', float('nan')):.2f})", "value": int(f["index"])}
                 for f in feats if "index" in f]
        chosen = [int(f["index"]) for f in feats[: spec.get("n_features") or len(feats)]]
        return ("", info, pareto, arms_table, clip_rows(ws, clips), clip_ids, clip_ids[0] if clip_ids else None,
                fopts, chosen, float(spec.get("strength", 0.0)))

    @app.callback(Output("steer-audio-name", "data"), Output("steer-live", "children"),
                  Input("steer-upload", "contents"), State("steer-upload", "filename"), prevent_initial_call=True)
    @guarded(2, status_index=1)
    def upload(contents, filename):
        name = f"upload:{filename or 'audio'}"
        uploads.clear()
        uploads[name] = decode_upload(contents, filename or "upload.wav")
        return name, message(f"{filename}: {len(uploads[name]) / 16000:.1f} s uploaded; press Run")

    @app.callback(Output("steer-job", "data"), Output("steer-poll", "disabled"),
                  Output("steer-live", "children", allow_duplicate=True), Input("steer-go", "n_clicks"),
                  State("steer-run", "value"), State("steer-clip", "value"), State("steer-audio-name", "data"),
                  State("steer-features", "value"), State("steer-strength", "value"), prevent_initial_call=True)
    @guarded(3, status_index=2)
    def start(_, name, clip_id, upload_name, feats, strength):
        from workbench.steering import Steering

        steering = Steering.load(ws.part_dir("steering", name))
        edit = steering.with_(features=[int(f) for f in feats or []] if steering.method == "sae" else None,
                              strength=float(strength if strength is not None else steering.strength))
        if upload_name in uploads:
            audio, label = uploads[upload_name], upload_name
        else:
            corpus, clip = ws.find_clip(str(clip_id))
            if clip is None:
                raise PartError(f"clip {clip_id!r} is in no corpus of the workspace: pick another or upload one")
            from workbench.audio import load_audio

            audio, label = load_audio(corpus.audio_path(clip), sr=16000), clip.id

        def run(job):
            job.update(f"loading {steering.model}", 0.1)
            m = model(steering.model)
            job.update("transcribing without the edit", 0.4)
            base = m.transcribe(audio)
            job.update(f"transcribing with {edit.describe()}", 0.7)
            with edit.applied(m):
                steered = m.transcribe(audio)
            return {"clip": label, "baseline": base, "steered": steered, "edit": edit.describe()}

        return jobs.submit(run), False, progress({"stage": "queued"})

    @app.callback(Output("steer-live", "children", allow_duplicate=True), Output("steer-poll", "disabled",
                  allow_duplicate=True), Input("steer-poll", "n_intervals"), State("steer-job", "data"),
                  prevent_initial_call=True)
    def poll(_, jid):
        job = jobs.status(jid)
        if not job["done"]:
            return progress(job), False
        if job["error"]:
            return explain(PartError(f"live steering: {job['error']}")), True
        r = job["result"]
        return html.Div([html.Div(f"{r['clip']} · {r['edit']} · {job['seconds']:.1f} s", className="wb-caption"),
                         html.Div([html.B("without the edit: "), html.Span(r["baseline"], id="steer-text-base")]),
                         html.Div([html.B("with the edit: "), html.Span(r["steered"], id="steer-text-steered")])],
                        className="wb-live-result"), True
