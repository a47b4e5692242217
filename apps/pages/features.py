"""Features page (``/features?sae=NAME/HOOK&feature=ID``): per SAE a filterable feature table; for one
feature its headline (the SAE bench's explanation and held-out score when written, else what it
fires on) with the domain mix beside it, the activation histogram and the SAE's density plot, the
ten strongest firing events (one example per event, one shared activation axis), activation bands
with their frame counts and an example each, and its output effect (ablate / amplify, live).
A picked or uploaded clip's most active features over time (the last action wins) are in
:mod:`apps.pages.feature_clips`.

Everything comes from ``sae eval``'s tables and one encode of sampled whole clips per SAE; the URL
follows the SAE and feature chosen, and a bad ``?sae=`` or ``?feature=`` gets a message with the
valid names or range.
"""
from __future__ import annotations

import json

from dash import Input, Output, State, dash_table, dcc, html, no_update

from apps import figures
from apps.data import SAE_HEADLINE_METRICS, SaeRef, Workspace
from apps.examples import domain_mix, headline
from apps.pages import feature_clips, feature_effect
from apps.pages.common import (example_card, guarded, message, picker, url_choice, url_int, url_location,
                               url_search)

PATH, TITLE = "/features", "Features"
N_TOP = 10
L0_NOTE = ("Batch-Top-K: k is the average number of active features per frame over a training batch; "
           "a single frame's L0 varies around it (L0 here is the measured per-frame mean)")


def _labels(cell) -> str:
    try:
        return ", ".join(f"{a} {b:.2f}" for a, b in json.loads(cell or "[]"))
    except (TypeError, ValueError):
        return ""


def feature_rows(table, explanations=None) -> list[dict]:
    """Records for the DataTable: numbers rounded, label lists as text, the dominant domain, and the
    bench's explanation and F1 when there are some."""
    df = table.copy()
    shares = [c for c in df.columns if c.startswith("share_")]
    if shares:
        df.insert(1, "domain", df[shares].idxmax(axis=1).str.removeprefix("share_"))
    if explanations is not None:
        ex = explanations.reindex(df["feature"])
        df.insert(1, "explanation", ex["explanation"].fillna("").astype(str).to_numpy())
        if "f1" in ex:
            df.insert(2, "f1", ex["f1"].astype(float).to_numpy())
        if "above_chance" in ex:  # "no rule above chance (best tried: ...)" keeps its best rule's F1: say so
            df.insert(3, "explained", ex["above_chance"].map({True: "yes", False: "no", "True": "yes", "False": "no"})
                      .fillna("no").to_numpy())
    for col in [c for c in df.columns if c.startswith("top_")]:
        df[col] = df[col].map(_labels)
    for col in df.select_dtypes("float").columns:  # float32 would print as 1.4998999834060669
        df[col] = df[col].astype(float).round(4)
    return df.to_dict("records")


def feature_options(table, explanations=None) -> list[dict]:
    df = table.sort_values("fires", ascending=False) if "fires" in table else table
    top = df["top_phones"].map(_labels) if "top_phones" in df else [""] * len(df)
    ex = explanations["explanation"].reindex(df["feature"]).fillna("").astype(str).to_numpy() \
        if explanations is not None else [""] * len(df)
    return [{"label": f"f{int(f)} · {(e or t)[:60]} · density {d:.2%}", "value": int(f)}
            for f, d, t, e in zip(df["feature"], df["density"], top, ex)]


def columns(rows: list[dict]) -> list[dict]:
    """DataTable columns; numbers typed numeric so a bare ``42`` filters like ``=42``."""
    if not rows:
        return []
    return [{"name": c, "id": c, "type": "numeric" if isinstance(v, (int, float)) and not isinstance(v, bool) else "text"}
            for c, v in rows[0].items()]


def layout(ws: Workspace, query: dict) -> html.Div:
    refs = ws.saes()
    if not refs:
        return html.Div([html.H2(TITLE), message(f"no SAE in {ws.root / 'saes'}: train one with `workbench sae train` "
                                                 "and summarise it with `workbench sae eval`", "warn")])
    key, note = url_choice(query, "sae", [r.key for r in refs], "SAE")
    want = query.get("feature") if note is None else None
    return html.Div([
        html.H2(TITLE), url_location("feat"), html.Div(note, id="feat-url-note"), dcc.Store(id="feat-want", data=want),
        html.Div([picker("feat-sae", [r.key for r in refs], key, "SAE"), html.Div(id="feat-sae-info", className="wb-info")],
                 className="wb-row"),
        html.Div(id="feat-status"),
        html.Div([picker("feat-f-domain", [], None, "domain", clearable=True, placeholder="any domain"),
                  html.Div([html.Label("top phone"), dcc.Input(id="feat-f-phone", type="text", debounce=True,
                                                                placeholder="e.g. AA")], className="wb-filter"),
                  html.Div([html.Label("explanation contains"), dcc.Input(id="feat-f-text", type="text", debounce=True,
                                                                          placeholder="e.g. music")], className="wb-filter"),
                  html.Div([html.Label("min F1"), dcc.Input(id="feat-f-score", type="number", debounce=True, min=0, max=1,
                                                            step=0.05)], className="wb-filter")], className="wb-row"),
        dash_table.DataTable(id="feat-table", sort_action="native", filter_action="native", page_size=12,
                             style_table={"overflowX": "auto"}, style_cell={"fontSize": 12, "padding": "2px 6px", "maxWidth": 240,
                                                                    "overflow": "hidden", "textOverflow": "ellipsis"},
                             tooltip_duration=None, sort_by=[{"column_id": "fires", "direction": "desc"}]),
        html.Div([picker("feat-feature", [], None, "feature (type to search ids and explanations)", searchable=True)],
                 className="wb-row"),
        html.H3(id="feat-title"), html.Div(id="feat-mix", className="wb-info"),
        html.Div([dcc.Graph(id="feat-hist", config={"displayModeBar": False}, className="wb-half"),
                  html.Div(id="feat-density", className="wb-half")], className="wb-row wb-two"),
        html.H3("Top-activating events (one example per event)"), html.Div(id="feat-top-note", className="wb-info"),
        html.Div(id="feat-top", className="wb-examples"),
        html.H3("Activation bands (equal frame counts, weakest first)"), html.Div(id="feat-bands"),
        html.Div(id="feat-quantile", className="wb-examples"),
        feature_effect.section(), feature_clips.section(),
    ])


def _cards(ws: Workspace, ref: SaeRef, feature: int, rows, caption, act_max) -> list:
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
        label = caption(r) + f": {clip.id} @ {r['start_s']:.2f} s · activation {r['activation']:.2f}"
        if r.get("n_frames", 1) > 1:
            label += f" · event {r['event_start_s']:.2f}-{r['event_end_s']:.2f} s ({int(r['n_frames'])} frames)"
        label += "".join(f" · {t} {r[t]}" for t in ("phones", "words") if isinstance(r.get(t), str))
        cards.append(example_card(ws, corpus, clip, float(r["start_s"]), float(r["end_s"]), label, trace, act_max))
    return cards or [message(f"feature {feature} fires on no sampled frame", "info")]


def _filter(rows: list[dict], domain, phone, text, score) -> list[dict]:
    out = rows
    if domain:
        out = [r for r in out if r.get("domain") == domain]
    if phone:
        p = str(phone).strip().lower()
        out = [r for r in out if any(x.split(" ")[0].lower() == p for x in str(r.get("top_phones", "")).split(", "))]
    if text:
        t = str(text).strip().lower()
        out = [r for r in out if t in str(r.get("explanation", "")).lower()]
    if score is not None:  # a score filter keeps explained features only (not a best-tried rule's F1)
        out = [r for r in out if isinstance(r.get("f1"), float) and r["f1"] >= float(score) and r.get("explained", "yes") == "yes"]
    return out


def register(app, ws: Workspace, jobs) -> None:
    memo: dict = {}  # per SAE: table records and dropdown options (rebuilt when its files change)

    def records(ref: SaeRef):
        table, ex = ws.feature_table(ref), ws.explanations(ref)
        if memo.get("key") != (ref.key, id(table), id(ex)):
            memo.update(key=(ref.key, id(table), id(ex)), rows=feature_rows(table, ex), opts=feature_options(table, ex))
        return table, ex, memo["rows"], memo["opts"]

    @app.callback(Output("feat-status", "children"), Output("feat-feature", "options"), Output("feat-feature", "value"),
                  Output("feat-sae-info", "children"), Output("feat-f-domain", "options"), Output("feat-want", "data"),
                  Output("feat-url-note", "children", allow_duplicate=True), Input("feat-sae", "value"),
                  State("feat-want", "data"), prevent_initial_call="initial_duplicate")
    @guarded(7)
    def choose_sae(key, want):
        ref = ws.sae(key)
        table, ex, rows, opts = records(ref)
        ev = ws.sae_eval(ref)
        info = ev.get("metrics", {})
        fd = ws.feature_dictionary(ref)
        shown = " · ".join(f"{k} {info[k]:.3g}" for k in SAE_HEADLINE_METRICS if isinstance(info.get(k), float))
        shown = f"k {fd.k} (batch average) · " + shown if fd.k else shown
        if ev.get("in_sample"):
            shown += " · in-sample (evaluated on the SAE's training clips)"
        cons = ev.get("seed_consistency") or {}
        if isinstance(cons.get("fraction_consistent"), float):  # sae eval --compare: another seed's SAE
            shown += (f" · consistent across seeds {cons['fraction_consistent']:.0%} of {cons.get('n_alive')} features "
                      f"(mean IoU {cons.get('mean_iou', float('nan')):.2f})")
        bench = "" if ex is not None else (" · no explanations.csv yet (run `workbench sae bench`): headlines are "
                                           "label mixes")
        value, note = (opts[0]["value"] if opts else None), no_update
        if want is not None:
            asked, note = url_int({"feature": want}, "feature", 0, fd.d_sae - 1, "feature",
                                  valid=set(table["feature"].astype(int)))
            value = asked if asked is not None else value
        domains = sorted({r.get("domain") for r in rows if r.get("domain")})
        return ("", opts, value, html.Span([f"{len(table)} of {fd.d_sae} features summarised · {shown}{bench} ",
                                            html.Abbr("(k vs L0?)", title=L0_NOTE, className="wb-muted")]),
                domains, None, note)

    @app.callback(Output("feat-table", "data"), Output("feat-table", "columns"), Input("feat-sae", "value"),
                  Input("feat-f-domain", "value"), Input("feat-f-phone", "value"), Input("feat-f-text", "value"),
                  Input("feat-f-score", "value"))
    def filter_table(key, domain, phone, text, score):
        try:
            rows = records(ws.sae(key))[2]
        except Exception:  # noqa: BLE001  (choose_sae shows the message)
            return [], []
        return _filter(rows, domain, phone, text, score), columns(rows)

    @app.callback(Output("feat-feature", "value", allow_duplicate=True), Input("feat-table", "active_cell"),
                  State("feat-table", "derived_viewport_data"), prevent_initial_call=True)
    def pick_row(cell, rows):
        if not cell or not rows or cell["row"] >= len(rows):
            return no_update
        return int(rows[cell["row"]]["feature"])

    @app.callback(Output("feat-url", "search"), Input("feat-sae", "value"), Input("feat-feature", "value"),
                  prevent_initial_call=True)
    def follow_url(key, feature):
        return url_search(sae=key, feature=feature)

    @app.callback(Output("feat-status", "children", allow_duplicate=True), Output("feat-hist", "figure"),
                  Output("feat-top", "children"), Output("feat-quantile", "children"), Output("feat-title", "children"),
                  Output("feat-mix", "children"), Output("feat-density", "children"), Output("feat-bands", "children"),
                  Output("feat-top-note", "children"),
                  Input("feat-feature", "value"), State("feat-sae", "value"), prevent_initial_call=True)
    @guarded(9)
    def choose_feature(feature, key):
        if feature is None:
            return "", figures.empty_figure("pick a feature"), [], [], "", "", "", "", ""
        ref, feature = ws.sae(key), int(feature)
        table = ws.feature_table(ref).set_index("feature")
        if feature not in table.index:
            return (message(f"feature {feature}: no summary (it never fired on the evaluated frames)", "warn"),
                    figures.empty_figure(""), [], [], f"Feature {feature}", "", "", "", "")
        row = table.loc[feature]
        ex = ws.explanations(ref)
        expl = ex.loc[feature].to_dict() if ex is not None and feature in ex.index else None
        title = f"Feature {feature}: {headline(row, expl)}"
        mix = domain_mix(row)
        mix_text = ("domains: " + ", ".join(f"{d} {s:.0%}" for d, s in mix.items()) if mix else "") + \
            f" · density {row['density']:.2%} · mean activation {row['mean_activation']:.2f}" + \
            "".join(f" · {t.removeprefix('top_')}: {_labels(row[t])}" for t in ("top_phones", "top_words") if t in row)
        if expl and "precision" in expl:
            mix_text += (f" · explanation held-out precision {float(expl['precision']):.2f}, recall "
                         f"{float(expl.get('recall', float('nan'))):.2f}")
        hist = ws.histograms(ref).get(str(feature))
        fig = figures.histogram_figure(hist, f"feature {feature}: activation histogram") if hist else \
            figures.empty_figure(f"feature {feature} never fired on the evaluated frames")
        url = ws.density_url(ref)
        density = html.Iframe(src=url, className="wb-iframe", title="density", sandbox="allow-scripts") if url else message(
            "no density.html (written by `workbench sae eval`)", "info")
        exs = ws.feature_examples(ref, feature, N_TOP)
        n_s, n_all = exs["sampled"]
        top_note = (f"{len(exs['top'])} of {exs['n_events']} events found in {n_s:,} sampled frames of {n_all:,} "
                    "(whole clips) and sae eval's top frames; one shared activation axis")
        bands = exs["bands"]
        bands_table = dash_table.DataTable(
            data=bands.round(3).to_dict("records"), id="feat-bands-table", style_cell={"fontSize": 12},
            columns=[{"name": n, "id": c} for c, n in (("band", "band"), ("lo", "from"), ("hi", "to"), ("frames", "frames"))]
        ) if len(bands) else message("no sampled frame where it fires")
        top = _cards(ws, ref, feature, exs["top"], lambda r: "top", exs["act_max"])
        q = _cards(ws, ref, feature, exs["band_examples"], lambda r: f"band {int(r['band'])} ({int(r['band_frames'])} frames)",
                   exs["act_max"]) if len(exs["band_examples"]) else []
        return "", fig, top, q, title, mix_text, density, bands_table, top_note

    feature_effect.register(app, ws, jobs)
    feature_clips.register(app, ws, jobs)
