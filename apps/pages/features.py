"""Features page (``/features``): per SAE, a sortable and searchable feature table; for one
feature its activation histogram and top-activating and quantile-sampled examples (audio player,
spectrogram with the activation over it, phone/word tiers); a picked or uploaded clip's most
active features over time.

Everything comes from ``sae eval``'s per-feature tables; clicks encode one clip's cached frames at
most (the quantile sample is encoded once per SAE). Uploads run the model live, in the worker.
"""
from __future__ import annotations

import json

import numpy as np
from dash import Input, Output, State, dash_table, dcc, html, no_update

from apps import figures
from apps.data import SAE_HEADLINE_METRICS, PartError, SaeRef, Workspace
from apps.live import MAX_UPLOAD_BYTES, decode_upload, model
from apps.pages.common import example_card, explain, guarded, message, picker, progress

PATH, TITLE = "/features", "Features"
N_EXAMPLES = 4


def _labels(cell) -> str:
    try:
        return ", ".join(f"{a} {b:.2f}" for a, b in json.loads(cell or "[]"))
    except (TypeError, ValueError):
        return ""


def feature_rows(table) -> list[dict]:
    """Records for the DataTable: numbers rounded, label lists as text."""
    df = table.copy()
    for col in [c for c in df.columns if c.startswith("top_")]:
        df[col] = df[col].map(_labels)
    for col in df.select_dtypes("float").columns:  # float32 would print as 1.4998999834060669
        df[col] = df[col].astype(float).round(4)
    return df.to_dict("records")


def feature_options(table) -> list[dict]:
    df = table.sort_values("fires", ascending=False) if "fires" in table else table
    top = df["top_phones"].map(_labels) if "top_phones" in df else [""] * len(df)
    return [{"label": f"f{int(f)} · density {d:.2%} · {t[:40]}", "value": int(f)}
            for f, d, t in zip(df["feature"], df["density"], top)]


def layout(ws: Workspace, query: dict) -> html.Div:
    refs = ws.saes()
    if not refs:
        return html.Div([html.H2(TITLE), message(f"no SAE in {ws.root / 'saes'}: train one with `workbench sae train` "
                                                 "and summarise it with `workbench sae eval`", "warn")])
    keys = [r.key for r in refs]
    key = query.get("sae") if query.get("sae") in keys else keys[0]
    return html.Div([
        html.H2(TITLE),
        html.Div([picker("feat-sae", keys, key, "SAE"), html.Div(id="feat-sae-info", className="wb-info")],
                 className="wb-row"),
        html.Div(id="feat-status"),
        dash_table.DataTable(id="feat-table", sort_action="native", filter_action="native", page_size=12,
                             style_table={"overflowX": "auto"}, style_cell={"fontSize": 12, "padding": "2px 6px", "maxWidth": 240,
                                                                    "overflow": "hidden", "textOverflow": "ellipsis"},
                             tooltip_duration=None,
                             sort_by=[{"column_id": "fires", "direction": "desc"}]),
        html.Div([picker("feat-feature", [], None, "feature (type to search)", searchable=True)], className="wb-row"),
        html.H3(id="feat-title"), dcc.Graph(id="feat-hist", config={"displayModeBar": False}),
        html.H3("Top-activating examples"), html.Div(id="feat-top", className="wb-examples"),
        html.H3("Quantile-sampled examples (low to high activation)"), html.Div(id="feat-quantile", className="wb-examples"),
        html.H3("A clip's most active features over time"),
        html.Div([picker("feat-clip", [], None, "cached clip"),
                  dcc.Upload(id="feat-upload", children=html.Div("or drop / choose an audio file"),
                             max_size=MAX_UPLOAD_BYTES, className="wb-upload")], className="wb-row"),
        dcc.Interval(id="feat-poll", interval=400, disabled=True), dcc.Store(id="feat-job"),
        html.Div(id="feat-clip-status"), dcc.Graph(id="feat-over-time", config={"displayModeBar": False}),
    ])


def _examples(ws: Workspace, ref: SaeRef, feature: int, rows, kind: str) -> list:
    cache = ws.sae_cache(ref)
    corpus, cards = cache.corpus, []
    by_id = {c.id: c for c in corpus}
    for _, r in rows.iterrows():
        clip = by_id.get(r["clip_id"])
        if clip is None:
            cards.append(message(f"clip {r['clip_id']} is not in the corpus of {cache.root}", "warn"))
            continue
        frames, codes = ws.clip_codes(ref, clip.id)
        trace = ((frames["start_s"] + frames["end_s"]).to_numpy() / 2, codes[:, feature])
        label = f"{kind}: {clip.id} @ {r['start_s']:.2f} s · activation {r['activation']:.2f}"
        label += "".join(f" · {t} {r[t]}" for t in ("phones", "words") if t in r and isinstance(r[t], str))
        cards.append(example_card(ws, corpus, clip, float(r["start_s"]), float(r["end_s"]), label, trace))
    return cards or [message(f"feature {feature} fires on no sampled frame", "info")]


def register(app, ws: Workspace, jobs) -> None:
    memo: dict = {}  # table records and dropdown options of the last SAE shown

    @app.callback(Output("feat-status", "children"), Output("feat-table", "data"), Output("feat-table", "columns"),
                  Output("feat-feature", "options"), Output("feat-feature", "value"), Output("feat-sae-info", "children"),
                  Output("feat-clip", "options"), Output("feat-clip", "value"), Input("feat-sae", "value"))
    @guarded(8)
    def choose_sae(key):
        ref = ws.sae(key)
        table = ws.feature_table(ref)
        ev = ws.sae_eval(ref)
        info = ev.get("metrics", {})
        shown = " · ".join(f"{k} {info[k]:.3g}" for k in SAE_HEADLINE_METRICS if isinstance(info.get(k), float))
        if ev.get("in_sample"):
            shown += " · in-sample (evaluated on the SAE's training clips)"
        cons = ev.get("seed_consistency") or {}
        if isinstance(cons.get("fraction_consistent"), float):  # sae eval --compare: another seed's SAE
            shown += (f" · consistent across seeds {cons['fraction_consistent']:.0%} of {cons.get('n_alive')} features "
                      f"(mean IoU {cons.get('mean_iou', float('nan')):.2f})")
        cols = [{"name": c, "id": c} for c in table.columns]
        if memo.get("table") is not table:  # the records change only when features.parquet does
            memo.update(table=table, rows=feature_rows(table), opts=feature_options(table))
        rows, opts = memo["rows"], memo["opts"]
        clips = ws.sae_cache(ref).clip_ids
        return ("", rows, cols, opts, opts[0]["value"] if opts else None,
                f"{len(table)} features · {shown}", clips, clips[0] if clips else None)

    @app.callback(Output("feat-feature", "value", allow_duplicate=True), Input("feat-table", "active_cell"),
                  State("feat-table", "derived_viewport_data"), prevent_initial_call=True)
    def pick_row(cell, rows):
        if not cell or not rows or cell["row"] >= len(rows):
            return no_update
        return int(rows[cell["row"]]["feature"])

    @app.callback(Output("feat-status", "children", allow_duplicate=True), Output("feat-hist", "figure"),
                  Output("feat-top", "children"), Output("feat-quantile", "children"), Output("feat-title", "children"),
                  Input("feat-feature", "value"), State("feat-sae", "value"), prevent_initial_call=True)
    @guarded(5)
    def choose_feature(feature, key):
        if feature is None:
            return "", figures.empty_figure("pick a feature"), [], [], ""
        ref, feature = ws.sae(key), int(feature)
        row = ws.feature_table(ref).set_index("feature").loc[feature]
        title = (f"Feature {feature}: density {row['density']:.2%}, mean activation {row['mean_activation']:.2f}"
                 + (f", phones {_labels(row['top_phones'])}" if "top_phones" in row else ""))
        hist = ws.histograms(ref).get(str(feature))
        fig = figures.histogram_figure(hist, f"feature {feature}: activation histogram") if hist else \
            figures.empty_figure(f"feature {feature} never fired on the evaluated frames")
        top = ws.top_frames(ref)
        top = top[top["feature"] == feature].sort_values("rank").head(N_EXAMPLES)
        quant = ws.quantile_examples(ref, feature, N_EXAMPLES)
        return ("", fig, _examples(ws, ref, feature, top, "top"),
                _examples(ws, ref, feature, quant, "quantile sample"), title)

    @app.callback(Output("feat-clip-status", "children"), Output("feat-over-time", "figure"),
                  Input("feat-clip", "value"), State("feat-sae", "value"), prevent_initial_call=True)
    @guarded(2)
    def choose_clip(clip_id, key):
        if not clip_id:
            return "", figures.empty_figure("pick a clip")
        frames, codes = ws.clip_codes(ws.sae(key), clip_id)
        t = (frames["start_s"] + frames["end_s"]).to_numpy() / 2
        return "", figures.features_over_time_figure(t, codes, title=f"{clip_id}: most active features")

    @app.callback(Output("feat-job", "data"), Output("feat-poll", "disabled"), Output("feat-clip-status", "children",
                  allow_duplicate=True), Input("feat-upload", "contents"), State("feat-upload", "filename"),
                  State("feat-sae", "value"), prevent_initial_call=True)
    @guarded(3, status_index=2)
    def upload(contents, filename, key):
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

        return jobs.submit(run), False, progress({"stage": "queued"})

    @app.callback(Output("feat-clip-status", "children", allow_duplicate=True),
                  Output("feat-over-time", "figure", allow_duplicate=True), Output("feat-poll", "disabled",
                  allow_duplicate=True), Input("feat-poll", "n_intervals"), State("feat-job", "data"),
                  prevent_initial_call=True)
    def poll(_, jid):
        job = jobs.status(jid)
        if not job["done"]:
            return progress(job), no_update, False
        if job["error"]:
            return explain(PartError(f"upload: {job['error']}")), no_update, True
        r = job["result"]
        return (message(f"{r['name']}: {len(r['codes'])} frames in {job['seconds']:.1f} s"),
                figures.features_over_time_figure(r["times"], r["codes"], title=f"{r['name']}: most active features"),
                True)
