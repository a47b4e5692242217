"""Live steering on the steering page: a clip or an upload (the last action wins), any SAE feature,
an edit with its strength explained (an empty strength is an error, never a default), Run in the
worker as the session's job, and the session's run history (reference, WER without / with the
edit, audio). Uploads are kept per session (:mod:`apps.sessions`), never by file name."""
from __future__ import annotations

from dash import Input, Output, State, dcc, html, no_update

from apps.data import PartError, Workspace
from apps.live import MAX_UPLOAD_BYTES, decode_upload, model
from apps.pages.common import explain, feature_link, guarded, message, picker, progress

EDIT_HELP = {
    "scale": "z' = s·z: 1 = no change, 0 = ablate, -1 = negate, above 1 amplifies",
    "ablate": "z' = (1 - s)·z: 0 = no change, 1 = ablate",
    "negate": "z' = -s·z: 0 = ablate, 1 = negate",
    "clamp": "z' = s on every edited frame (the gate limits where)",
    "clamp_target": "z' = z + s (target - z): 0 = no change, 1 = set to the target code",
    "project": "x - s (x·û) û: 0 = no change, 1 = remove the direction",
    "subtract": "x - s u: 0 = no change, negative adds the concept",
    "add": "x + s u: 0 = no change",
}
HISTORY = 20  # runs kept per session (newest first)


def section() -> html.Div:
    return html.Div([
        html.H3("Live steering"),
        html.Div([picker("steer-clip", [], None, "clip", searchable=True),
                  dcc.Upload(id="steer-upload", children=html.Div("or drop / choose an audio file"),
                             max_size=MAX_UPLOAD_BYTES, className="wb-upload")], className="wb-row"),
        html.Div(id="steer-shown", className="wb-info"),
        html.Div([picker("steer-features", [], None, "features (type an id or words of an explanation)", multi=True,
                         searchable=True),
                  picker("steer-edit", [], None, "edit"),
                  html.Div([html.Label("strength", htmlFor="steer-strength"),
                            dcc.Input(id="steer-strength", type="number", step=0.5)], className="wb-picker"),
                  picker("steer-gate", [], None, "gate"),
                  html.Button("Run", id="steer-go", className="wb-button")], className="wb-row"),
        html.Div(id="steer-strength-help", className="wb-strength-help"), html.Div(id="steer-chosen-links",
                                                                                   className="wb-info"),
        dcc.Store(id="steer-source"), dcc.Store(id="steer-job"), dcc.Store(id="steer-history", storage_type="session"),
        dcc.Interval(id="steer-poll", interval=400, disabled=True),
        html.Div(id="steer-live"), html.H3("Run history (this tab)"), html.Div(id="steer-history-table"),
    ])


def _feature_options(ws: Workspace, ref, spec: dict) -> list[dict]:
    if ref is not None and ref.eval_dir is not None:
        from apps.pages.features import feature_options

        return feature_options(ws.feature_table(ref), ws.explanations(ref))
    return [{"label": f"f{int(f['index'])} (effect {f.get('effect_size', float('nan')):.2f})", "value": int(f["index"])}
            for f in spec.get("features") or [] if "index" in f]


def _history_table(history: list[dict]) -> html.Table | html.Div:
    if not history:
        return message("no run yet in this tab", "info")
    head = html.Tr([html.Th(h) for h in ("clip", "audio", "edit", "reference", "without the edit", "WER",
                                         "with the edit", "WER")])

    def wer(v):
        return "" if v is None else f"{v:.1%}"

    rows = [html.Tr([html.Td(r["clip"]), html.Td(html.Audio(src=r["audio"], controls=True, preload="none",
                                                            className="wb-audio") if r.get("audio") else ""),
                     html.Td(r["edit"]), html.Td(r.get("reference") or "(none)"), html.Td(r["baseline"]),
                     html.Td(wer(r.get("wer_baseline"))), html.Td(r["steered"]), html.Td(wer(r.get("wer_steered")))])
            for r in history]
    return html.Table([html.Thead(head), html.Tbody(rows)], className="wb-transcripts", id="steer-history-rows")


def _wer(reference: str | None, text: str) -> float | None:
    from workbench.text import word_errors

    if not reference:
        return None
    errors, words = word_errors(reference, text)
    return errors / words if words else None


def register(app, ws: Workspace, jobs) -> None:
    @app.callback(Output("steer-clip", "options"), Output("steer-clip", "value"), Output("steer-features", "options"),
                  Output("steer-features", "value"), Output("steer-edit", "options"), Output("steer-edit", "value"),
                  Output("steer-strength", "value"), Output("steer-gate", "options"), Output("steer-gate", "value"),
                  Output("steer-url-note", "children", allow_duplicate=True),
                  Input("steer-run", "value"), State("steer-want-clip", "data"), prevent_initial_call="initial_duplicate")
    @guarded(10, status_index=9)
    def choose_run(name, want_clip):
        from workbench.steering import DIRECTION_EDITS, SAE_EDITS

        art = ws.steering(name)
        spec, ev = art["spec"], art["eval"] or {}
        ids = [str(c["id"]) for c in ev.get("clips") or [] if c.get("id") is not None]
        ref = _sae_ref(ws, art)
        ids += [c.id for c in (ws.sae_cache(ref).corpus if ref is not None else []) if c.id not in ids]
        clip, note = (ids[0] if ids else None), ""
        if want_clip:
            if want_clip in ids:
                clip = want_clip
            else:
                note = message(f"?clip={str(want_clip)[:80]}: no such clip for this artifact; valid: "
                               f"{', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}", "error")
        chosen = [int(f["index"]) for f in (spec.get("features") or [])[: spec.get("n_features") or 0]]
        edits = SAE_EDITS if spec.get("method") == "sae" else DIRECTION_EDITS
        gates = ["none", "frame"] + (["detector"] if spec.get("detector") else [])
        return (ids, clip, _feature_options(ws, ref, spec), chosen, list(edits), spec.get("edit"),
                spec.get("strength"), gates, spec.get("gate", "none"), note)

    @app.callback(Output("steer-strength-help", "children"), Output("steer-chosen-links", "children"),
                  Input("steer-edit", "value"), Input("steer-features", "value"), State("steer-run", "value"))
    def explain_edit(edit, feats, name):
        try:
            ref = _sae_ref(ws, ws.steering(name))
        except PartError:
            ref = None
        links = ["edited: "] + [x for f in feats or [] for x in (feature_link(ref.key if ref else None, f), " ")]
        return f"strength s for {edit}: {EDIT_HELP.get(edit, '')}", links if feats else ""

    @app.callback(Output("steer-source", "data"), Output("steer-shown", "children"), Input("steer-clip", "value"),
                  prevent_initial_call=True)
    def pick_clip(clip_id):
        return ({"clip": clip_id}, f"used by Run: cached clip {clip_id}") if clip_id else (None, "")

    @app.callback(Output("steer-source", "data", allow_duplicate=True),
                  Output("steer-shown", "children", allow_duplicate=True), Input("steer-upload", "contents"),
                  State("steer-upload", "filename"), State("session", "data"), prevent_initial_call=True)
    @guarded(2, status_index=1)
    def upload(contents, filename, sid):
        audio = decode_upload(contents, filename or "upload.wav")
        key = app.sessions.add_upload(sid, filename or "upload", audio)
        return ({"upload": key, "name": filename},
                f"used by Run: uploaded file {filename} ({len(audio) / 16000:.1f} s); press Run")

    @app.callback(Output("steer-job", "data"), Output("steer-poll", "disabled"),
                  Output("steer-live", "children", allow_duplicate=True), Input("steer-go", "n_clicks"),
                  State("steer-run", "value"), State("steer-source", "data"), State("steer-features", "value"),
                  State("steer-strength", "value"), State("steer-edit", "value"), State("steer-gate", "value"),
                  State("session", "data"), prevent_initial_call=True)
    @guarded(3, status_index=2)
    def start(_, name, source, feats, strength, edit, gate, sid):
        from workbench.steering import Steering

        steering = Steering.load(ws.part_dir("steering", name))
        if strength is None or strength == "":
            raise PartError(f"strength is empty: type a number ({EDIT_HELP.get(edit or steering.edit, '')})")
        edit_ = steering.with_(features=[int(f) for f in feats or []] if steering.method == "sae" else None,
                               strength=float(strength), edit=edit or None, gate=gate or None)
        source = source or {}
        if source.get("upload"):
            label, audio = app.sessions.upload(sid, source["upload"])
            reference, url = None, f"/upload/{sid}/{source['upload']}.wav"
        else:
            corpus, clip = ws.find_clip(str(source.get("clip")))
            if clip is None:
                raise PartError(f"clip {source.get('clip')!r} is in no corpus of the workspace: pick another or upload one")
            from workbench.audio import load_audio

            audio, label = load_audio(corpus.audio_path(clip), sr=16000), clip.id
            reference, url = clip.transcript, ws.clip_url(corpus, clip)

        def run(job):
            job.update(f"loading {steering.model}", 0.1)
            m = model(steering.model)
            job.update("transcribing without the edit", 0.4)
            base = m.transcribe(audio)
            job.update(f"transcribing with {edit_.describe()}", 0.7)
            with edit_.applied(m):
                steered = m.transcribe(audio)
            return {"clip": label, "baseline": base, "steered": steered, "edit": edit_.describe(),
                    "reference": reference, "audio": url, "wer_baseline": _wer(reference, base),
                    "wer_steered": _wer(reference, steered)}

        return jobs.submit(run, session=sid), False, progress({"stage": "queued"})

    @app.callback(Output("steer-live", "children", allow_duplicate=True), Output("steer-poll", "disabled",
                  allow_duplicate=True), Output("steer-history", "data"), Input("steer-poll", "n_intervals"),
                  State("steer-job", "data"), State("session", "data"), State("steer-history", "data"),
                  prevent_initial_call=True)
    def poll(_, jid, sid, history):
        job = jobs.status(jid, sid)
        if not job["done"]:
            return progress(job), False, no_update
        if job["error"]:
            return explain(PartError(f"live steering: {job['error']}")), True, no_update
        r = job["result"]
        shown = html.Div([html.Div(f"{r['clip']} · {r['edit']} · {job['seconds']:.1f} s", className="wb-caption"),
                          html.Div([html.B("without the edit: "), html.Span(r["baseline"], id="steer-text-base")]),
                          html.Div([html.B("with the edit: "), html.Span(r["steered"], id="steer-text-steered")])],
                         className="wb-live-result")
        return shown, True, ([r] + list(history or []))[:HISTORY]

    @app.callback(Output("steer-history-table", "children"), Input("steer-history", "data"))
    def show_history(history):
        return _history_table(history or [])


def _sae_ref(ws: Workspace, art: dict):
    spec = art["spec"]
    if spec.get("method") != "sae" or not spec.get("sae"):
        return None
    return ws.sae_at(art["path"] / spec["sae"])
