"""The features page's output-effect section: ablate and amplify the chosen feature in Whisper on the
clips of its strongest events and show how the transcript and the first decoding step's top tokens
change (:mod:`apps.effects`; a live model run in the worker, kept per SAE and feature afterwards)."""
from __future__ import annotations

from collections import OrderedDict

from dash import Input, Output, State, dcc, html, no_update

from apps.data import PartError, Workspace
from apps.effects import AMPLIFY, output_effect
from apps.live import model
from apps.pages.common import explain, guarded, message, progress

N_CLIPS = 3
_CACHE: OrderedDict = OrderedDict()  # (sae dir, weights mtime, feature) -> result; at most 64 kept


def section() -> html.Div:
    return html.Div([
        html.H3("Output effect"),
        html.Div([html.Button("Ablate and amplify on its top clips", id="feat-effect-go", className="wb-button"),
                  html.Span(f" scale 0 (ablated) and {AMPLIFY:g} (amplified) through the SAE, error term kept; "
                            f"first {N_CLIPS} clips of its strongest events", className="wb-muted")], className="wb-row"),
        dcc.Store(id="feat-effect-job"), dcc.Interval(id="feat-effect-poll", interval=500, disabled=True),
        html.Div(id="feat-effect"),
    ])


def render(result: dict, seconds: float | None = None) -> html.Div:
    head = html.Tr([html.Th(h) for h in ("clip", "condition", "transcript", "first-step top tokens (p)")])
    rows = []
    for c in result["clips"]:
        for cond in ("unchanged", "ablated", "amplified"):
            toks = ", ".join(f"{t!r} {p:.2f}" for t, p in c[cond]["first_tokens"])
            rows.append(html.Tr([html.Td(c["clip"] if cond == "unchanged" else ""), html.Td(cond),
                                 html.Td(c[cond]["text"], className=f"wb-effect-{cond}"), html.Td(toks)]))
    note = f"feature {result['feature']} · {'cached' if seconds is None else f'{seconds:.1f} s'}"
    return html.Div([html.Div(note, className="wb-caption"),
                     html.Table([html.Thead(head), html.Tbody(rows)], className="wb-transcripts", id="feat-effect-table")])


def register(app, ws: Workspace, jobs) -> None:
    @app.callback(Output("feat-effect-job", "data"), Output("feat-effect-poll", "disabled"),
                  Output("feat-effect", "children"), Input("feat-effect-go", "n_clicks"), State("feat-sae", "value"),
                  State("feat-feature", "value"), State("session", "data"), prevent_initial_call=True)
    @guarded(3, status_index=2)
    def start(_, key, feature, sid):
        if feature is None:
            raise PartError("pick a feature first")
        ref, feature = ws.sae(key), int(feature)
        cache_key = (str(ref.sae_dir), (ref.sae_dir / "sae_weights.safetensors").stat().st_mtime_ns, feature)
        if cache_key in _CACHE:
            return no_update, True, render(_CACHE[cache_key])
        cache = ws.sae_cache(ref)
        spec = cache.meta["model"]["spec"]
        top = ws.feature_examples(ref, feature)["top"]
        clip_ids = list(dict.fromkeys(top["clip_id"]))[:N_CLIPS]
        if not clip_ids:
            raise PartError(f"feature {feature} fires on no sampled clip")
        corpus = cache.corpus
        by_id = {c.id: c for c in corpus}
        fd = ws.feature_dictionary(ref)

        def run(job):
            from workbench.audio import load_audio

            job.update(f"loading {spec}", 0.05)
            m = model(spec)
            clips = [(c, load_audio(corpus.audio_path(by_id[c]), sr=16000)) for c in clip_ids if c in by_id]
            res = output_effect(m, ref.hook, str(ref.sae_dir), fd.d_in, feature, clips, job.update)
            _CACHE[cache_key] = res
            while len(_CACHE) > 64:
                _CACHE.popitem(last=False)
            return res

        return jobs.submit(run, session=sid), False, progress({"stage": "queued"})

    @app.callback(Output("feat-effect", "children", allow_duplicate=True),
                  Output("feat-effect-poll", "disabled", allow_duplicate=True), Input("feat-effect-poll", "n_intervals"),
                  State("feat-effect-job", "data"), State("session", "data"), prevent_initial_call=True)
    def poll(_, jid, sid):
        job = jobs.status(jid, sid)
        if not job["done"]:
            return progress(job), False
        if job["error"]:
            return explain(PartError(f"output effect: {job['error']}")), True
        return render(job["result"], job["seconds"]), True

    @app.callback(Output("feat-effect", "children", allow_duplicate=True), Input("feat-feature", "value"),
                  prevent_initial_call=True)
    def clear(_):
        return message("press the button to measure this feature's output effect (a live model run)", "info")
