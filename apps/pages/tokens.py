"""Cochlear tokens page (``/tokens``): a clip's cochleagram (211 channels, 200 Hz) with its token
sequence under it, token usage over the corpus, and for one token its average cochleagram patch
and the clips where it occurs (audio players).

Below them, the analyses of ``workbench tokens analyze`` in ``WORKSPACE/tokens/NAME/`` for any token
source (codec codes, cochlear tokens, k-means units): usage, purity / mutual information against
phones, speaker and domain, consistency (DRI) and stability tables, and their plots.

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
    from probes.tokens.metrics import usage as token_usage

    counts = pd.Series(ids).value_counts()
    u = token_usage(np.asarray(ids, dtype=np.int64)).iloc[0]
    return counts, {"frames": int(len(ids)), "distinct tokens": int(u["codes_used"]),
                    "entropy (bits)": round(float(u["entropy_bits"]), 2), "perplexity": round(float(u["perplexity"]), 1)}


def plural(n: int, word: str) -> str:
    """``1 frame``, ``2 frames``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


ANALYSIS_TABLES = ("usage", "purity", "consistency", "stability")


def analyses(ws: Workspace) -> dict:
    """``{name: folder}`` of the token analyses in ``WORKSPACE/tokens/`` (folders with a summary.json)."""
    return {p.name: p for p in ws.folders("tokens")
            if (p / "summary.json").is_file() and p.resolve().is_relative_to(ws.root.resolve())}


def analysis_section(ws: Workspace, query: dict) -> list:
    runs = list(analyses(ws))
    if not runs:
        return [html.H3("Token analyses"), message(
            f"no token analyses in {ws.root / 'tokens'}: run `workbench tokens analyze --cache CACHE --out "
            f"{ws.root / 'tokens' / 'NAME'}` (usage, purity, consistency, stability)", "info")]
    run, note = url_choice(query, "analysis", runs, "token analysis")
    return [html.H3("Token analyses (workbench tokens analyze)"), html.Div(note), *comparison(ws),
            picker("tok-analysis", runs, run, "analysis"), html.Div(id="tok-analysis-info", className="wb-info"),
            dcc.Graph(id="tok-analysis-graph", config={"displayModeBar": False}),
            dcc.Graph(id="tok-analysis-coch", config={"displayModeBar": False}), html.Div(id="tok-analysis-tables")]


#: columns of the comparison table (``workbench tokens compare``) shown on the page, in this order
COMPARE_COLUMNS = ("analysis", "source", "hook", "frame_rate", "codebooks", "codes_used", "perplexity",
                   "phones_purity", "phones_purity_chance", "phones_mi_bits", "phones_mi_norm", "consistency",
                   "ued_noise_30dB", "ued_gain_-6dB", "ued_shift_5ms", "ued_resample_3/4", "ued_reencode_1")


def comparison(ws: Workspace) -> list:
    """The `workbench tokens compare` table over every analysis of the workspace (codebook 0 of each)."""
    from probes.tokens.analyze import compare

    found = analyses(ws)
    if len(found) < 2:
        return []
    try:
        df = compare(list(found.values()))
    except (OSError, ValueError, KeyError) as e:
        return [message(f"comparison table not built: {e}", "warn")]
    df = df[[c for c in COMPARE_COLUMNS if c in df.columns]]
    return [html.Div(f"All {len(df)} analyses side by side (codebook 0; purity / MI against phones with "
                     "their shuffled-token chance; ued_*: unit edit distance under each perturbation, lower is "
                     "more stable):", className="wb-caption"), _table(df, "tok-compare")]


def _table(df: pd.DataFrame, id_: str):
    from dash import dash_table

    df = df.round(4)
    return dash_table.DataTable(data=df.to_dict("records"), columns=[{"name": c, "id": c} for c in df.columns],
                                sort_action="native", page_size=12, style_cell={"fontSize": 12}, id=id_,
                                style_table={"overflowX": "auto"})  # wide tables scroll inside the page


def layout(ws: Workspace, query: dict) -> html.Div:
    sources = ws.token_sources()
    if not sources:
        return html.Div([html.H2(TITLE), *analysis_section(ws, query), message(
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
        *analysis_section(ws, query),
    ])


def register(app, ws: Workspace, jobs) -> None:
    follow_url(app, "tok", cache="tok-source", token="tok-token")

    @app.callback(Output("tok-analysis-info", "children"), Output("tok-analysis-graph", "figure"),
                  Output("tok-analysis-tables", "children"), Output("tok-analysis-coch", "figure"),
                  Input("tok-analysis", "value"))
    @guarded(4)
    def choose_analysis(name):
        import json

        from probes.tokens.figures import figure, token_cochleagram_figure

        found = analyses(ws)
        if name not in found:
            return (message(f"no token analysis {str(name)[:80]!r}", "error"), figures.empty_figure(""), [],
                    figures.empty_figure(""))
        d = found[name]
        summary = json.loads((d / "summary.json").read_text())
        read = {t: pd.read_csv(d / f"{t}.csv") for t in (*ANALYSIS_TABLES, "rank_frequency") if (d / f"{t}.csv").is_file()}
        fig = figure(read.get("rank_frequency", pd.DataFrame(columns=["codebook", "rank", "share"])),
                     read.get("purity", pd.DataFrame()), read.get("stability"), f"{summary['source']} · {summary['hook']}")
        info = (f"{summary['source']} · {summary['hook']} · {plural(summary['frames'], 'frame')} · "
                f"{plural(summary['codebooks'], 'codebook')} · {summary['frame_rate']:g} frames/s")
        tables = []
        for t in ANALYSIS_TABLES:
            if t in read:
                tables += [html.H4(f"{t}.csv"), _table(read[t], f"tok-table-{t}")]
            else:
                tables.append(html.Div(f"{t}.csv: not computed (run without --no-model)", className="wb-caption"))
        coch = figures.empty_figure("token_cochleagrams.npz: not computed (run without --no-cochleagram)")
        if (d / "token_cochleagrams.npz").is_file():
            with np.load(d / "token_cochleagrams.npz") as tc:
                coch = token_cochleagram_figure(dict(tc), centre_hz())
        return info, fig, tables, coch

    @app.callback(Output("tok-status", "children"), Output("tok-clip", "options"), Output("tok-clip", "value"),
                  Output("tok-token", "options"), Output("tok-token", "value"), Output("tok-stats", "children"),
                  Output("tok-usage", "figure"), Output("tok-url-note", "children", allow_duplicate=True),
                  Input("tok-source", "value"), State("tok-want-token", "data"), prevent_initial_call="initial_duplicate")
    @guarded(8)
    def choose_source(name, want=None):
        src = ws.token_source(name)
        counts, stats = usage(ws.token_ids(src))
        clips = src["tokens"].clip_ids
        opts = [{"label": f"token {t} ({plural(int(n), 'frame')})", "value": int(t)} for t, n in counts.items()]
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
        fig = figures.cochleagram_tokens_figure(t, coch, ids, cf, f"{clip_id}: cochleagram and tokens",
                                                highlight=token)
        # colour keys: level of the cochleagram (top) and token id of the strip (bottom)
        fig.data[0].update(showscale=True, colorbar={"title": {"text": "level"}, "len": 0.7, "y": 0.62})
        fig.data[1].update(showscale=True, colorbar={"title": {"text": "token id"}, "len": 0.25, "y": 0.1})
        if token is not None:
            fig.update_layout(showlegend=True, legend={"orientation": "h", "y": -0.25})
        return "", fig

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
            cards.append(html.Div([html.Div(f"{cid}: {plural(int(r['n']), 'frame')}, first at {r['start_s']:.2f} s",
                                            className="wb-caption"),
                                   html.Audio(src=url, controls=True, preload="none", className="wb-audio") if url
                                   else message("audio outside the workspace: not served", "warn")],
                                  className="wb-example"))
        return f"token {token}: {plural(len(hits), 'frame')} in {plural(len(occ), 'clip')}", fig, cards
