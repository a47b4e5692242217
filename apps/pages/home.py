"""Workspace page (``/``): what the workspace holds, with key figures, each linking to its page."""
from __future__ import annotations

from urllib.parse import urlencode

from dash import dcc, html

from apps.data import KINDS, Part, Workspace
from apps.pages.common import message

PATH, TITLE = "/", "Workspace"
PAGE_OF = {"saes": ("/features", "sae"), "caches": ("/tokens", "cache"), "probes": ("/probes", "run"),
           "neuro": ("/eeg", "run"), "steering": ("/steering", "artifact"), "conditions": ("/conditions", "run")}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def _link(part: Part, token_caches: set[str]) -> str | None:
    if part.kind not in PAGE_OF or part.error or (part.kind == "caches" and part.name not in token_caches):
        return None  # of the caches, only token caches have a page of their own
    path, key = PAGE_OF[part.kind]
    return f"{path}?{urlencode({key: part.name})}"


def card(part: Part, token_caches: set[str] = frozenset()) -> html.Div:
    body = [html.Div(part.name, className="wb-card-title")]
    if part.error:
        body.append(message(part.error, "warn"))
    else:
        body.append(html.Table([html.Tr([html.Td(k), html.Td(_fmt(v))]) for k, v in part.figures.items()
                                if v is not None], className="wb-kv"))
    if part.command:  # from workspace.json; long for steps that made several parts
        body.append(html.Details([html.Summary("command", className="wb-muted"),
                                  html.Code(part.command, className="wb-command")]))
    href = _link(part, token_caches)
    if href:
        body.append(dcc.Link("open", href=href, className="wb-open"))
    return html.Div(body, className="wb-card", id=f"card-{part.kind}-{part.name}".replace("/", "-").replace(".", "-"))


def layout(ws: Workspace, query: dict) -> html.Div:
    parts = ws.parts()
    token_caches = {s["name"] for s in ws.token_sources()}
    sections = [html.H2(f"Workspace {ws.root.name}")]
    if not parts:
        sections.append(message(f"{ws.root} holds none of {', '.join(KINDS)} yet: build them with the workbench CLI "
                                "(see the README).", "warn"))
    for kind in KINDS:
        mine = [p for p in parts if p.kind == kind]
        sections.append(html.Section([html.H3(f"{kind} ({len(mine)})"),
                                      html.Div([card(p, token_caches) for p in mine] or [message(f"no {kind} in this workspace")],
                                               className="wb-cards")], id=f"section-{kind}"))
    return html.Div(sections)


def register(app, ws: Workspace, jobs) -> None:
    """The workspace page has no callbacks of its own."""
