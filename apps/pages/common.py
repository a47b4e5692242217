"""Pieces every page uses: messages instead of tracebacks, pickers, audio players with figures."""
from __future__ import annotations

import functools
import logging
from typing import Callable, Sequence

import numpy as np
from dash import dcc, html, no_update

from apps import figures
from apps.data import PartError, Workspace
from apps.spectrogram import log_mel, segment

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


def picker(id_: str, options: Sequence, value=None, label: str = "", **kw) -> html.Div:
    opts = [o if isinstance(o, dict) else {"label": str(o), "value": o} for o in options]
    if value is None and opts:
        value = opts[0]["value"]
    return html.Div([html.Label(label, htmlFor=id_), dcc.Dropdown(id=id_, options=opts, value=value,
                                                                  clearable=False, **kw)], className="wb-picker")


def tiers_of(clip, names: Sequence[str] = ("phones", "words")) -> dict:
    return {n: [(s.start_s, s.end_s, s.label) for s in clip.tiers[n]] for n in names if clip.tiers.get(n)}


def window(start_s: float, end_s: float, duration_s: float | None) -> tuple[float, float]:
    a = max(0.0, start_s - CONTEXT_S)
    b = end_s + CONTEXT_S
    return a, (min(b, duration_s) if duration_s else b)


def example_card(ws: Workspace, corpus, clip, start_s: float, end_s: float, caption: str,
                 trace: tuple[np.ndarray, np.ndarray] | None = None) -> html.Div:
    """An audio player for a clip segment with its spectrogram, the activation ``trace`` (times,
    values) drawn over it and the phone/word tiers under it."""
    a, b = window(start_s, end_s, clip.duration_s)
    url = ws.clip_url(corpus, clip, a, b)
    try:
        times, freqs, db = log_mel(segment(corpus.audio_path(clip), a, b), offset_s=a)
    except (OSError, ValueError) as e:
        return html.Div([html.Div(caption, className="wb-caption"), message(f"audio unreadable: {e}", "warn")],
                        className="wb-example")
    at, av = trace if trace is not None else (np.zeros(0), np.zeros(0))
    keep = (at >= a) & (at <= b)
    fig = figures.activation_figure(times, freqs, db, at[keep], av[keep], tiers_of(clip), marker=(start_s, end_s))
    player = html.Audio(src=url, controls=True, className="wb-audio", preload="none") if url else message(
        "audio lies outside the workspace: not served", "warn")
    return html.Div([html.Div(caption, className="wb-caption"), player,
                     dcc.Graph(figure=fig, config={"displayModeBar": False})],
                    className="wb-example")


def progress(job: dict) -> html.Div:
    """Progress indicator of a live job (see :class:`apps.live.Jobs`)."""
    return html.Div([html.Progress(value=str(job.get("progress", 0.0)), max="1", className="wb-progress"),
                     html.Span(f" {job.get('stage', '')} ({job.get('seconds', 0):.1f} s)")], className="wb-running")
