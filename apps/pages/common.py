"""Pieces every page uses: messages instead of tracebacks, pickers, audio players with figures."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from dash import dcc, html, no_update

from apps import figures
from apps.data import PartError, Workspace
from apps.spectrogram import segment_log_mel

log = logging.getLogger(__name__)
CONTEXT_S = 0.6  # audio shown either side of an example frame


def message(text: str, kind: str = "info") -> html.Div:
    """A visible note (``kind`` info | warn | error) where a figure or table would be."""
    return html.Div(text, className=f"wb-msg wb-{kind}")


def explain(e: Exception) -> html.Div:
    """The page-level message for a failure: the part and file for PartError, the error otherwise."""
    if isinstance(e, PartError):
        return message(str(e), "warn")
    log.exception("app callback failed")
    return message(f"could not show this: {type(e).__name__}: {e}", "error")


def guarded(n_outputs: int, status_index: int = 0):
    """Decorate a callback so any exception becomes a message in output ``status_index``."""

    def wrap(fn: Callable):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # a callback must never hand the browser a traceback
                out = [no_update] * n_outputs
                out[status_index] = explain(e)
                return out[0] if n_outputs == 1 else out

        return inner

    return wrap


# --- URLs ---------------------------------------------------------------------------------------
FEATURES_PATH = "/features"


def feature_href(sae: str, feature: int) -> str:
    """URL of ``feature`` of SAE ``sae`` (its key ``NAME/HOOK``) on the features page."""
    return f"{FEATURES_PATH}?{urlencode({'sae': sae, 'feature': int(feature)})}"


def feature_link(sae: str | None, feature: int, text: str | None = None) -> html.A | html.Span:
    """A link to the feature page of ``feature`` (``f123``), or plain text when no SAE is known.

    A plain ``<a>`` (a full page load), so it also works from the features page itself; the tab
    keeps its session. Usable in any page::

        html.Td(feature_link("block3/encoder.blocks.3.hook_resid_post", 2009))
    """
    text = text or f"f{int(feature)}"
    if not sae:
        return html.Span(text)
    return html.A(text, href=feature_href(sae, feature), className="wb-feature-link")


def feature_markdown(sae: str | None, feature: int) -> str:
    """The same link as Markdown, for a DataTable column with ``"presentation": "markdown"``."""
    return f"[f{int(feature)}]({feature_href(sae, feature)})" if sae else f"f{int(feature)}"


def url_choice(query: dict, key: str, valid: Sequence, what: str, default=None):
    """Validate ``?key=`` of a page URL against the ``valid`` values.

    Returns ``(value, note)``: the asked value when valid (``note`` None); else ``default`` (or the
    first valid value) and a visible message naming the bad value and the valid ones. A missing
    parameter is no error::

        run, note = url_choice(query, "run", runs, "probe run")
    """
    valid = list(valid)
    fallback = default if default is not None else (valid[0] if valid else None)
    asked = query.get(key)
    if asked is None or asked == "":
        return fallback, None
    if asked in valid:
        return asked, None
    shown = ", ".join(map(str, valid[:20])) + (f" (and {len(valid) - 20} more)" if len(valid) > 20 else "")
    return fallback, message(f"?{key}={str(asked)[:80]}: no such {what}; valid: {shown or 'none'}", "error")


def url_int(query: dict, key: str, lo: int, hi: int, what: str, valid=None,
            absent: str = "has no summary (it never fired on the evaluated frames)"):
    """Validate an integer ``?key=`` in ``lo..hi`` (and in ``valid`` when given): ``(value or None, note)``.

    A bare number or ``f42`` are accepted; anything else gets a message with the valid range."""
    asked = query.get(key)
    if asked is None or asked == "":
        return None, None
    text = str(asked).strip().lstrip("fF")
    try:
        value = int(text)
    except ValueError:
        return None, message(f"?{key}={str(asked)[:80]}: not a {what} number; valid: {lo}..{hi}", "error")
    if not lo <= value <= hi:
        return None, message(f"?{key}={value}: no such {what}; valid: {lo}..{hi}", "error")
    if valid is not None and value not in valid:
        return None, message(f"?{key}={value}: {what} {value} {absent}; valid: {lo}..{hi}, {len(valid)} of them",
                             "error")
    return value, None


def url_search(**params) -> str:
    """``?a=1&b=x`` of the non-empty ``params`` (what a page writes into its URL location)."""
    keep = {k: v for k, v in params.items() if v is not None and v != "" and v != []}
    return f"?{urlencode(keep)}" if keep else ""


def url_location(prefix: str) -> dcc.Location:
    """The page's own URL writer: a callback setting ``(f"{prefix}-url", "search")`` changes the
    address bar (``pushState``) without reloading or re-routing, so the URL follows the choices."""
    return dcc.Location(id=f"{prefix}-url", refresh=False)


def follow_url(app, prefix: str, **pickers: str) -> None:
    """Register the callback that writes the page's URL (``{prefix}-url``, see :func:`url_location`)
    from its pickers' values, e.g. ``follow_url(app, "eeg", run="eeg-run", feature="eeg-feature")``."""
    from dash import Input, Output

    names = list(pickers)

    @app.callback(Output(f"{prefix}-url", "search"), [Input(i, "value") for i in pickers.values()],
                  prevent_initial_call=True)
    def _follow(*values):
        return url_search(**dict(zip(names, values)))


def sae_key_for(ws: Workspace, hook: str, hint: str | None = None) -> str | None:
    """Key (``NAME/HOOK``) of the workspace SAE on ``hook`` (the one saved at ``hint`` when given and
    found, else the first), or None: for linking feature ids that name only their hook."""
    refs = [r for r in ws.saes() if r.hook == hook]
    if hint:
        exact = ws.sae_at(hint if Path(hint).is_absolute() else ws.root / hint)
        if exact is not None and exact.hook == hook:
            return exact.key
    return refs[0].key if refs else None


def link_sae_features(ws: Workspace, df, meta: dict | None = None, set_col: str = "feature_set",
                      feat_col: str = "feature") -> tuple[list[dict], list[dict]]:
    """``(records, columns)`` for a DataTable of ``df`` whose SAE feature ids (``f1234`` in rows whose
    ``set_col`` is ``sae:HOOK``, neuro's ``features.csv``) are links to their feature pages
    (a markdown column). ``meta``: the run's record; its ``sae`` path picks the SAE when given::

        records, columns = link_sae_features(ws, corr, run["meta"])
    """
    import re

    recs = df.to_dict("records")
    hint = (meta or {}).get("sae") or ((meta or {}).get("inputs") or {}).get("sae")
    keys: dict = {}
    linked = False
    for r in recs:
        fs, f = str(r.get(set_col, "")), str(r.get(feat_col, ""))
        m = re.fullmatch(r"f(\d+)", f)
        if fs.startswith("sae:") and m:
            hook = fs.removeprefix("sae:")
            if hook not in keys:
                keys[hook] = sae_key_for(ws, hook, hint)
            if keys[hook]:
                r[feat_col] = feature_markdown(keys[hook], int(m.group(1)))
                linked = True
    cols = [{"name": c, "id": c, **({"presentation": "markdown"} if c == feat_col and linked else {})} for c in df.columns]
    return recs, cols


def picker(id_: str, options: Sequence, value=None, label: str = "", **kw) -> html.Div:
    opts = [o if isinstance(o, dict) else {"label": str(o), "value": o} for o in options]
    if value is None and opts:
        value = opts[0]["value"]
    kw.setdefault("clearable", False)
    return html.Div([html.Label(label, htmlFor=id_), dcc.Dropdown(id=id_, options=opts, value=value, **kw)],
                    className="wb-picker")


def tiers_of(clip, names: Sequence[str] = ("phones", "words")) -> dict:
    return {n: [(s.start_s, s.end_s, s.label) for s in clip.tiers[n]] for n in names if clip.tiers.get(n)}


def window(start_s: float, end_s: float, duration_s: float | None) -> tuple[float, float]:
    a = max(0.0, start_s - CONTEXT_S)
    b = end_s + CONTEXT_S
    return a, (min(b, duration_s) if duration_s else b)


def example_card(ws: Workspace, corpus, clip, start_s: float, end_s: float, caption: str,
                 trace: tuple[np.ndarray, np.ndarray] | None = None, act_max: float | None = None) -> html.Div:
    """An audio player for a clip segment with its spectrogram, the activation ``trace`` (times,
    values) drawn over it on an axis up to ``act_max`` (shared by a feature's cards) and the
    phone/word tiers under it."""
    a, b = window(start_s, end_s, clip.duration_s)
    url = ws.clip_url(corpus, clip, a, b)
    try:
        times, freqs, db = segment_log_mel(corpus.audio_path(clip), a, b)
    except (OSError, ValueError) as e:
        return html.Div([html.Div(caption, className="wb-caption"), message(f"audio unreadable: {e}", "warn")],
                        className="wb-example")
    at, av = trace if trace is not None else (np.zeros(0), np.zeros(0))
    keep = (at >= a) & (at <= b)
    fig = figures.activation_spec(times, freqs, db, at[keep], av[keep], tiers_of(clip), marker=(start_s, end_s),
                                     act_max=act_max)
    player = html.Audio(src=url, controls=True, className="wb-audio", preload="none") if url else message(
        "audio lies outside the workspace: not served", "warn")
    return html.Div([html.Div(caption, className="wb-caption"), player,
                     dcc.Graph(figure=fig, config={"displayModeBar": False})],
                    className="wb-example")


def progress(job: dict) -> html.Div:
    """Progress indicator of a live job (see :class:`apps.live.Jobs`)."""
    return html.Div([html.Progress(value=str(job.get("progress", 0.0)), max="1", className="wb-progress"),
                     html.Span(f" {job.get('stage', '')} ({job.get('seconds', 0):.1f} s)")], className="wb-running")
