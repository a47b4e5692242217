"""The Dash app over a workspace: a navigation bar, seven pages and the safe file route.

Pages live in :mod:`apps.pages` (one module each: ``PATH``, ``TITLE``, ``layout(ws, query)`` and
``register(app, ws, jobs)``). A small router renders them by URL path instead of Dash's
``use_pages`` registry, which is process-global and would mix several apps in one process (the
browser tests start one app per test). The router re-renders on a new path only; a page writes its
choices into the address bar through its own ``dcc.Location`` (``common.url_location``) without
re-rendering. Each tab gets a session id (``dcc.Store(id="session")``, :mod:`apps.sessions`);
callbacks with per-session state take ``State("session", "data")`` and use ``app.sessions``.

Example
-------
>>> app = create_app("workspace/demo")                     # doctest: +SKIP
>>> app.run(host="127.0.0.1", port=8050)                   # doctest: +SKIP
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from urllib.parse import parse_qs

import dash
from dash import Input, Output, State, dcc, html

from apps.data import Workspace
from apps.live import MAX_UPLOAD_BYTES, Jobs
from apps.pages import conditions, eeg, features, home, probes, steering, tokens
from apps.pages.common import explain
from apps.server import add_file_route, add_upload_route
from apps.sessions import Sessions, new_session_id

PAGES = (home, features, tokens, probes, conditions, eeg, steering)
log = logging.getLogger(__name__)


def create_app(workspace: str | os.PathLike, jobs: Jobs | None = None, sessions: Sessions | None = None) -> dash.Dash:
    """A Dash app serving the pages of ``workspace`` (read-only; live runs use ``jobs``, uploads
    are kept per browser session in ``sessions``)."""
    ws = Workspace(workspace)
    jobs = jobs or Jobs()
    if sessions is None:
        sessions = Sessions()
        atexit.register(sessions.close)
    app = dash.Dash(__name__, title=f"workbench: {ws.root.name}", suppress_callback_exceptions=True,
                    assets_folder=os.path.join(os.path.dirname(__file__), "assets"))
    app.server.config["MAX_CONTENT_LENGTH"] = 2 * MAX_UPLOAD_BYTES  # base64 uploads arrive inside callbacks
    add_file_route(app.server, ws.root)
    add_upload_route(app.server, sessions)
    nav = html.Nav([html.Span("workbench", className="wb-brand")] +
                   [dcc.Link(p.TITLE, href=p.PATH, className="wb-nav-link", id=f"nav-{p.__name__.split('.')[-1]}")
                    for p in PAGES] + [html.Span(str(ws.root), className="wb-root")], className="wb-nav")
    # a function: every page load issues a fresh id, which the tab's sessionStorage then overrides
    # with its own (so a reload keeps the session and no other tab shares it)
    app.layout = lambda: html.Div([dcc.Location(id="url"), dcc.Store(id="session", storage_type="session",
                                                                     data=new_session_id()),
                                   nav, html.Main(id="page", className="wb-page")])
    by_path = {p.PATH: p for p in PAGES}

    @app.callback(Output("page", "children"), Input("url", "pathname"), State("url", "search"))
    def route(pathname, search):
        page = by_path.get(pathname or "/")
        if page is None:
            return html.Div([html.H2("Not found"), html.P(f"no page {pathname}; pages: {', '.join(by_path)}")])
        query = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}
        try:
            return page.layout(ws, query)
        except Exception as e:  # a broken part shows its message, never a traceback
            return html.Div([html.H2(page.TITLE), explain(e)])

    for page in PAGES:
        page.register(app, ws, jobs)
    app.workspace, app.jobs, app.sessions = ws, jobs, sessions
    threading.Thread(target=_warm, args=(ws,), daemon=True, name="workbench-app-warm").start()
    return app


def _warm(ws: Workspace) -> None:
    """Compute once, in the background, what first clicks would otherwise wait for (the SAE
    samples, each example clip's codes and mel power, the cochleagram's centre frequencies)."""
    from apps.pages.tokens import centre_hz
    from apps.spectrogram import segment_log_mel

    try:
        centre_hz()
        for ref in ws.saes():
            if ref.eval_dir is not None:
                ws.quantile_examples(ref, 0)
                cache = ws.sae_cache(ref)
                for clip in list(cache.corpus)[:48]:  # the caches hold 64
                    ws.clip_codes(ref, clip.id)
                    segment_log_mel(cache.corpus.audio_path(clip), 0.0, 0.1)
    except Exception as e:  # warming is an optimisation: the page reports real problems itself
        log.warning("warming the app's caches failed (first clicks will be slower; the page shows the "
                    "problem): %s: %s", type(e).__name__, e, exc_info=log.isEnabledFor(logging.DEBUG))


def post_callback(app: dash.Dash, client, first_input: str, inputs: list, state: list = (), output: str = ""):
    """Call the callback whose first input is ``first_input`` (``"id.prop"``) as the browser does
    (``POST /_dash-update-component`` through a Flask test ``client``); returns the response.
    ``output``: a part of the callback's output ids, to choose among callbacks with the same first
    input. Used by the latency benchmark and the tests."""
    key = next((k for k, cb in app.callback_map.items()
                if f"{cb['inputs'][0]['id']}.{cb['inputs'][0]['property']}" == first_input and output in k), None)
    if key is None:
        raise KeyError(f"no callback with first input {first_input}")
    cb = app.callback_map[key]
    outs = cb["output"] if isinstance(cb["output"], list) else [cb["output"]]
    spec = [{"id": o.component_id, "property": o.component_property} for o in outs]
    body = {"output": key, "outputs": spec if isinstance(cb["output"], list) else spec[0],
            "inputs": [{**i, "value": v} for i, v in zip(cb["inputs"], inputs)],
            "state": [{**s, "value": v} for s, v in zip(cb["state"], state)],
            "changedPropIds": [first_input]}
    return client.post("/_dash-update-component", json=body)
