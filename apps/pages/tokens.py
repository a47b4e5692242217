"""Cochlear tokens page (``/tokens``): a clip's cochleagram (211 channels, 200 Hz) with its token
sequence under it, token usage over the corpus, and for one token its average cochleagram patch
and the clips where it occurs (audio players).

Data: a cache with ``tokens.hook_ids`` (``workbench cache --model auristream-tiny --hooks
tokens.hook_ids``; AuriStream/WavCoch tokens likewise) and a ``cochleagram.hook_out`` cache of
the same corpus (``--model cochleagram``), matched frame by frame (both 200 Hz).
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from dash import Input, Output, State, dcc, html

from apps import figures
from apps.data import Workspace
from apps.pages.common import follow_url, guarded, message, picker, url_choice, url_int, url_location

PATH, TITLE = "/tokens", "Cochlear tokens"
PATCH_FRAMES = 10  # +-50 ms around each occurrence
MAX_OCCURRENCES = 400  # occurrences averaged per token (evenly spread)
N_CLIPS = 4


@functools.lru_cache(maxsize=1)
def centre_hz() -> np.ndarray:
    from workbench.models.cochleagram import Cochleagram

    return np.asarray(Cochleagram().centre_frequencies)


def usage(ids: np.ndarray) -> tuple[pd.Series, dict]:
    """Token counts and summary statistics (distinct tokens, entropy in bits, perplexity)."""
    counts = pd.Series(ids).value_counts()
    p = counts.to_numpy() / max(counts.sum(), 1)
    h = float(-(p * np.log2(p)).sum()) if len(p) else 0.0
    return counts, {"frames": int(len(ids)), "distinct tokens": int(len(counts)), "entropy (bits)": round(h, 2),
                    "perplexity": round(2 ** h, 1)}


def layout(ws: Workspace, query: dict) -> html.Div:
    sources = ws.token_sources()
    if not sources:
        return html.Div([html.H2(TITLE), message(
            f"no cache with cochlear tokens in {ws.root / 'caches'}: run `workbench cache --model auristream-tiny "
            "--hooks tokens.hook_ids ...` (and `--model cochleagram --hooks cochleagram.hook_out` for the "
            "cochleagram)", "warn")])
    names = [s["name"] for s in sources]
    q = {"cache": query.get("cache", query.get("source"))}  # ?source= is the older name
    name, note = url_choice(q, "cache", names, "token cache")
    return html.Div([
        html.H2(TITLE), url_location("tok"), html.Div(note, id="tok-url-note"),
        dcc.Store(id="tok-want-token", data=query.get("token") if note is None else None),
        html.Div([picker("tok-source", names, name, "token cache"), picker("tok-clip", [], None, "clip"),
                  picker("tok-token", [], None, "token", searchable=True)], className="wb-row"),
        html.Div(id="tok-status"),
        dcc.Graph(id="tok-clip-graph", config={"displayModeBar": False}),
        html.H3("Token usage over the corpus"), html.Div(id="tok-stats", className="wb-info"),
        dcc.Graph(id="tok-usage", config={"displayModeBar": False}),
        html.H3("Chosen token"), html.Div(id="tok-token-status"),
        dcc.Graph(id="tok-patch", config={"displayModeBar": False}),
        html.Div(id="tok-clips", className="wb-examples"),
    ])


def register(app, ws: Workspace, jobs) -> None:
    follow_url(app, "tok", cache="tok-source", token="tok-token")
    @app.callback(Output("tok-status", "children"), Output("tok-clip", "options"), Output("tok-clip", "value"),
                  Output("tok-token", "options"), Output("tok-token", "value"), Output("tok-stats", "children"),
                  Output("tok-usage", "figure"), Output("tok-url-note", "children", allow_duplicate=True),
                  Input("tok-source", "value"), State("tok-want-token", "data"), prevent_initial_call="initial_duplicate")
    @guarded(8)
    def choose_source(name, want=None):
        src = ws.token_source(name)
        counts, stats = usage(ws.token_ids(src))
        clips = src["tokens"].clip_ids
        opts = [{"label": f"token {t} ({n} frames)", "value": int(t)} for t, n in counts.items()]
        note = "" if src["cochleagram"] is not None else message(
            "no cochleagram cache of this corpus: only token sequences are shown", "warn")
        value, bad = (opts[0]["value"] if opts else None), ""
        if want is not None and opts:
            ids = [o["value"] for o in opts]
            asked, bad = url_int({"token": want}, "token", min(ids), max(ids), "token", valid=set(ids),
                                 absent="never occurs in this cache")
            value = asked if asked is not None else value
        return (note, clips, clips[0] if clips else None, opts, value,
                " · ".join(f"{k} {v}" for k, v in stats.items()),
                figures.token_usage_figure(counts, f"{name}: token usage (rank-frequency)"), bad or "")

    @app.callback(Output("tok-status", "children", allow_duplicate=True), Output("tok-clip-graph", "figure"),
                  Input("tok-clip", "value"), Input("tok-token", "value"), State("tok-source", "value"),
                  prevent_initial_call=True)
    @guarded(2)
    def show_clip(clip_id, token, name):
        src = ws.token_source(name)
        cache = src["tokens"]
        rows = cache.select("tokens.hook_ids", clips=[clip_id])
        ids = ws.token_ids(src)[rows]
        frames = cache.frames("tokens.hook_ids").iloc[rows]
        t = ((frames["start_s"] + frames["end_s"]) / 2).to_numpy()
        if src["cochleagram"] is None:
            coch = np.zeros((len(ids), 1))
        else:
            coch = ws.cochleagram_rows(src, clip_id, frames["frame"].to_numpy())
        cf = centre_hz() if coch.shape[1] == len(centre_hz()) else None
        return "", figures.cochleagram_tokens_figure(t, coch, ids, cf, f"{clip_id}: cochleagram and tokens",
                                                     highlight=token)

    @app.callback(Output("tok-token-status", "children"), Output("tok-patch", "figure"),
                  Output("tok-clips", "children"), Input("tok-token", "value"), State("tok-source", "value"),
                  prevent_initial_call=True)
    @guarded(3)
    def choose_token(token, name):
        src = ws.token_source(name)
        ids = ws.token_ids(src)
        frames = src["tokens"].frames("tokens.hook_ids")
        hits = np.flatnonzero(ids == token)
        if not len(hits):
            return message(f"token {token} does not occur"), figures.empty_figure("no occurrences"), []
        picked = hits[np.linspace(0, len(hits) - 1, min(len(hits), MAX_OCCURRENCES)).astype(int)]
        fig = figures.empty_figure("no cochleagram cache for this corpus")
        if src["cochleagram"] is not None:
            offsets = np.arange(-PATCH_FRAMES, PATCH_FRAMES + 1)
            sub = frames.iloc[picked]
            patches = [ws.cochleagram_rows(src, cid, g["frame"].to_numpy()[:, None] + offsets[None, :])
                       for cid, g in sub.groupby("clip_id", sort=False)]
            patch = np.nanmean(np.concatenate(patches), axis=0)
            fig = figures.token_patch_figure(offsets / 200.0, patch,
                                             f"token {token}: mean cochleagram over {len(picked)} occurrences",
                                             centre_hz())
        occ = frames.iloc[hits].groupby("clip_id", sort=False).agg(n=("frame", "size"), start_s=("start_s", "first"),
                                                                    end_s=("end_s", "first"))
        corpus = src["tokens"].corpus
        by_id = {c.id: c for c in corpus}
        cards = []
        for cid, r in occ.sort_values("n", ascending=False).head(N_CLIPS).iterrows():
            url = ws.clip_url(corpus, by_id[cid], max(r["start_s"] - 0.3, 0), r["end_s"] + 0.3) if cid in by_id else None
            cards.append(html.Div([html.Div(f"{cid}: {int(r['n'])} frames, first at {r['start_s']:.2f} s",
                                            className="wb-caption"),
                                   html.Audio(src=url, controls=True, preload="none", className="wb-audio") if url
                                   else message("audio outside the workspace: not served", "warn")],
                                  className="wb-example"))
        return f"token {token}: {len(hits)} frames in {len(occ)} clips", fig, cards
