"""The features page's clip section: a cached clip's or an uploaded file's most active features over
time. The picker and the upload never fight: the last action wins, and the page says which clip is
shown. Uploads run the model live in the worker, as the uploading session's job; every feature id of
the heatmap links to its feature page."""
from __future__ import annotations

import numpy as np
from dash import Input, Output, State, dcc, html, no_update

from apps import figures
from apps.data import PartError, Workspace
from apps.live import MAX_UPLOAD_BYTES, decode_upload, model
from apps.pages.common import explain, feature_link, guarded, message, picker, progress

TOP = 12


def section() -> html.Div:
    return html.Div([
        html.H3("A clip's most active features over time"),
        html.Div([picker("feat-clip", [], None, "cached clip", searchable=True),
                  dcc.Upload(id="feat-upload", children=html.Div("or drop / choose an audio file"),
                             max_size=MAX_UPLOAD_BYTES, className="wb-upload")], className="wb-row"),
        dcc.Interval(id="feat-poll", interval=400, disabled=True), dcc.Store(id="feat-job"),
        html.Div(id="feat-shown", className="wb-info"), html.Div(id="feat-clip-status"),
        dcc.Graph(id="feat-over-time", config={"displayModeBar": False}), html.Div(id="feat-over-time-links"),
    ])


def links(key: str, codes: np.ndarray) -> html.Div:
    """Links to the feature pages of the heatmap's rows (same order as the figure)."""
    peak = np.asarray(codes).max(axis=0) if np.size(codes) else np.zeros(0)
    order = [int(f) for f in np.argsort(-peak)[:TOP] if peak[f] > 0]
    return html.Div(["rows: "] + [x for f in order for x in (feature_link(key, f), " ")], className="wb-info")


def register(app, ws: Workspace, jobs) -> None:
    @app.callback(Output("feat-clip", "options"), Output("feat-clip", "value"), Input("feat-sae", "value"))
    def clips(key):
        try:
            ids = ws.sae_cache(ws.sae(key)).clip_ids
        except PartError:
            return [], None
        return ids, ids[0] if ids else None

    @app.callback(Output("feat-clip-status", "children"), Output("feat-over-time", "figure"),
                  Output("feat-shown", "children"), Output("feat-over-time-links", "children"),
                  Output("feat-job", "data", allow_duplicate=True), Output("feat-poll", "disabled", allow_duplicate=True),
                  Input("feat-clip", "value"), State("feat-sae", "value"), prevent_initial_call=True)
    @guarded(6)
    def choose_clip(clip_id, key):
        if not clip_id:
            return "", figures.empty_figure("pick a clip"), "", "", None, True
        frames, codes = ws.clip_codes(ws.sae(key), clip_id)
        t = (frames["start_s"] + frames["end_s"]).to_numpy() / 2
        # a pending upload is forgotten: the picker was the last action
        return ("", figures.features_over_time_figure(t, codes, top=TOP, title=f"{clip_id}: most active features"),
                f"shown: cached clip {clip_id}", links(key, codes), None, True)

    @app.callback(Output("feat-job", "data"), Output("feat-poll", "disabled"), Output("feat-clip-status", "children",
                  allow_duplicate=True), Input("feat-upload", "contents"), State("feat-upload", "filename"),
                  State("feat-sae", "value"), State("session", "data"), prevent_initial_call=True)
    @guarded(3, status_index=2)
    def upload(contents, filename, key, sid):
        ref = ws.sae(key)
        spec = ws.sae_cache(ref).meta["model"]["spec"]
        audio = decode_upload(contents, filename or "upload.wav")
        fd = ws.feature_dictionary(ref)

        def run(job):
            job.update(f"loading {spec}", 0.1)
            m = model(spec)
            job.update(f"running {spec} to {ref.hook}", 0.4)
            acts = m.run_with_cache(audio, ref.hook)[ref.hook].float().numpy()
            job.update("encoding with the SAE", 0.8)
            codes = fd.encode_numpy(acts)
            t = (np.arange(len(codes)) + 0.5) / m.frame_rate(ref.hook)
            return {"times": t, "codes": codes, "name": filename}

        return jobs.submit(run, session=sid), False, progress({"stage": "queued"})

    @app.callback(Output("feat-clip-status", "children", allow_duplicate=True),
                  Output("feat-over-time", "figure", allow_duplicate=True), Output("feat-poll", "disabled",
                  allow_duplicate=True), Output("feat-shown", "children", allow_duplicate=True),
                  Output("feat-over-time-links", "children", allow_duplicate=True),
                  Input("feat-poll", "n_intervals"), State("feat-job", "data"), State("session", "data"),
                  State("feat-sae", "value"), prevent_initial_call=True)
    def poll(_, jid, sid, key):
        if not jid:  # the picker was used after the upload: its clip stays shown
            return no_update, no_update, True, no_update, no_update
        job = jobs.status(jid, sid)
        if not job["done"]:
            return progress(job), no_update, False, no_update, no_update
        if job["error"]:
            return explain(PartError(f"upload: {job['error']}")), no_update, True, no_update, no_update
        r = job["result"]
        return (message(f"{r['name']}: {len(r['codes'])} frames in {job['seconds']:.1f} s"),
                figures.features_over_time_figure(r["times"], r["codes"], top=TOP,
                                                  title=f"{r['name']}: most active features"),
                True, f"shown: uploaded file {r['name']}", links(key, r["codes"]))
