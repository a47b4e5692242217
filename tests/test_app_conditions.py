"""The app's noise-condition views (issue 23) without a browser: the ``conditions/NAME`` readers on a tiny
run written here (``app_workspace.write_conditions``, the layout ``workbench conditions`` writes), the
per-layer curves, the clip view's callbacks posted as the browser posts them, and the run and clip
pickers refusing names from outside the workspace."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from app_workspace import COND_HOOKS, write_conditions

SECRET = "outside-secret-c0nd"


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    write_conditions(root)
    return root


def _post(app, first_input, inputs, state=(), output=""):
    from apps.app import post_callback

    r = post_callback(app, app.server.test_client(), first_input, list(inputs), list(state), output)
    assert r.status_code in (200, 204), r.data[:300]
    return json.loads(r.get_data(as_text=True) or "{}")


def test_conditions_are_a_workspace_part_with_their_figures(ws):
    from apps.data import KINDS, Workspace

    w = Workspace(ws)
    assert "conditions" in KINDS
    part = next(p for p in w.parts("conditions"))
    assert part.name == "fixture" and part.error is None
    assert part.figures["layers"] == 4 and part.figures["SI-SNR gain nsnet2 (dB)"] == 8.0
    run = w.conditions_run("fixture")
    assert run["hooks"] == COND_HOOKS  # summary.json's layer order, not alphabetical
    assert set(run["transcripts"]["condition"]) == {"clean", "noise_0db", "noise_5db", "noise_0db+nsnet2",
                                                    "noise_5db+nsnet2"}


def test_versions_of_an_utterance_are_clean_noisy_and_enhanced_with_transcripts(ws):
    from apps.data import Workspace
    from workbench.audio import load_audio

    w = Workspace(ws)
    assert w.condition_utterances("fixture") == ["utt0", "utt1"]
    vs = w.condition_versions("fixture", "utt1")
    assert [v["role"] for v in vs] == ["clean", "noisy", "enhanced", "noisy", "enhanced"]  # higher SNR first
    assert [v["condition"] for v in vs] == ["clean", "noise_5db", "noise_5db+nsnet2", "noise_0db", "noise_0db+nsnet2"]
    said = pd.read_csv(ws / "conditions" / "fixture" / "transcripts.csv").set_index("clip")["text"]
    for v in vs:
        assert v["text"] == said[v["clip"]]  # each version carries its own transcript
        assert v["url"].startswith("/files/") and (ws / v["url"].removeprefix("/files/")).is_file()
    # the URLs name different audio: clean is a tone, the noisy one has more noise than the enhanced one
    audio = {v["condition"]: load_audio(ws / v["url"].removeprefix("/files/"), sr=16000) for v in vs}
    err = {k: float(np.std(a - audio["clean"])) for k, a in audio.items()}
    assert err["clean"] == 0 and err["noise_0db"] > err["noise_0db+nsnet2"] > 0.01
    assert vs[2]["si_snr_db"] == 13.0 and vs[1]["si_snr_db"] == 5.0
    # without transcripts.csv (older runs): the text is None, the audio still there
    (ws / "conditions" / "fixture" / "transcripts.csv").unlink()
    assert all(v["text"] is None and v["url"] for v in w.condition_versions("fixture", "utt1"))


def test_the_corpus_is_found_without_summary_and_a_half_written_run_names_its_folder(ws):
    from apps.data import PartError, Workspace

    run = ws / "conditions" / "fixture"
    doc = json.loads((run / "summary.json").read_text())
    doc.pop("corpus")
    (run / "summary.json").write_text(json.dumps(doc))  # an older run: found by its noisy clip ids
    w = Workspace(ws)
    assert w.conditions_corpus("fixture").root.name == "fixture-mix"
    other = write_conditions(ws, "plain", utterances=1, snrs=(10,), enhancers=())
    (other / "quality.csv").write_text("\n")  # what a run without enhancers writes
    assert [v["role"] for v in w.condition_versions("plain", "utt0")] == ["clean", "noisy"]
    assert w.conditions_run("plain")["quality"] is None
    (ws / "conditions" / "empty").mkdir()
    with pytest.raises(PartError, match="no similarity.csv or robustness.csv in .*empty"):
        w.conditions_run("empty")
    with pytest.raises(PartError, match="no utterance 'nope' .* valid: utt0, utt1"):
        w.condition_versions("fixture", "nope")


def test_curves_have_one_line_per_condition_in_layer_order(ws):
    from apps.data import Workspace
    from apps.pages.condition_curves import curves

    w = Workspace(ws)
    sim = pd.read_csv(ws / "conditions" / "fixture" / "similarity.csv")
    info, cka, rob, links = curves(w, "fixture", "cka_no_massive")
    assert "whisper-tiny.en" in info and "nsnet2 +8.0 dB" in info
    assert sorted(t.name for t in cka.data) == sorted(set(sim.condition))  # clean is the reference, no line
    assert [t.name for t in cka.data] == ["noise_0db", "noise_0db+nsnet2", "noise_5db", "noise_5db+nsnet2"]
    for t in cka.data:
        want = sim[sim.condition == t.name].set_index("hook").loc[COND_HOOKS, "cka_no_massive"].to_numpy()
        assert np.allclose(t.y, want) and list(t.x) == [h.replace("encoder.", "").replace("hook_", "") for h in COND_HOOKS]
        assert (t.line.dash == "dash") == ("+" in t.name)
    colour = {t.name: t.line.color for t in cka.data}
    assert colour["noise_0db"] == colour["noise_0db+nsnet2"] != colour["noise_5db"]
    assert {t.name: t.line.color for t in rob.data if t.name in colour} == colour  # same colours in both figures
    _, cka_all, _, _ = curves(w, "fixture", "cka")  # the all-frames CKA is one click away
    assert not np.allclose(cka_all.data[0].y, cka.data[0].y)
    names = [t.name for t in rob.data]
    assert "clean" in names and names[-1] == "majority class" and np.allclose(rob.data[-1].y, 0.15)
    assert len(links) == 3  # a label and a link per utterance
    assert links[1].href == "/conditions?run=fixture&clip=utt0"


def test_callbacks_serve_curves_and_three_players_per_row(ws):
    from apps import create_app

    app = create_app(ws)
    out = _post(app, "probe-conditions.value", ["fixture", "cka_no_massive"], output="probe-cond-cka")["response"]
    assert len(out["probe-cond-cka"]["figure"]["data"]) == 4 and len(out["probe-cond-robust"]["figure"]["data"]) == 6
    out = _post(app, "cond-run.value", ["fixture"], ["utt1"], output="cond-clip")["response"]
    assert out["cond-clip"]["value"] == "utt1" and len(out["cond-clip"]["options"]) == 2
    body = json.dumps(_post(app, "cond-clip.value", ["utt1"], ["fixture"])["response"])
    srcs = sorted(set(__import__("re").findall(r'"src": "(/files/[^"]+)"', body)))
    assert len(srcs) == 5, srcs  # clean + 2 noisy + 2 enhanced
    client = app.server.test_client()
    for s in srcs:
        r = client.get(s)
        assert r.status_code == 200 and r.mimetype.startswith("audio/"), s
    assert "the fixture noise_0db 1" in body and "the fixture sentence nsnet2 1" in body
    # a bad ?clip= in the URL falls back to the first utterance with a message naming the valid ones
    out = _post(app, "cond-run.value", ["fixture"], ["bogus"], output="cond-clip")["response"]
    assert out["cond-clip"]["value"] == "utt0" and "valid: utt0, utt1" in json.dumps(out)


HOSTILE = ["../outside/conditions/run", "../../outside", "/etc", "../../etc", "fixture/../../outside", "..", ""]


@pytest.mark.parametrize("first_input,state,output", [("probe-conditions.value", [], "probe-cond-cka"),
                                                      ("cond-run.value", [None], "cond-clip")])
def test_conditions_pickers_stay_inside_the_workspace(ws, tmp_path, first_input, state, output):
    from apps import create_app

    outside = tmp_path / "outside"
    write_conditions(outside, name="run")
    for f in ("similarity.csv", "robustness.csv"):
        df = pd.read_csv(outside / "conditions" / "run" / f)
        df["condition"] = SECRET
        df.to_csv(outside / "conditions" / "run" / f, index=False)
    (ws / "conditions" / "link").symlink_to(outside / "conditions" / "run")
    app = create_app(ws)

    def body(value):
        args = [value, "cka"] if first_input.startswith("probe") else [value]
        return json.dumps(_post(app, first_input, args, state, output))

    assert "fixture" in body("fixture")
    for bad in HOSTILE + ["link", str(outside / "conditions" / "run"), str(outside / "missing")]:
        b = body(bad)
        assert SECRET not in b and "runs: fixture" in b, (bad, b[:300])
    a = body("../../outside").replace("../../outside", "X")
    assert a == body("../../nowhere").replace("../../nowhere", "X")
    # the clip picker: only the run's own utterances (a path is just an unknown name)
    b = json.dumps(_post(app, "cond-clip.value", ["../../outside/conditions/run"], ["fixture"]))
    assert "valid: utt0, utt1" in b and SECRET not in b
    shutil.rmtree(outside)


def test_conditions_sort_by_snr_not_by_name():
    import pandas as pd

    from apps import figures

    table = pd.DataFrame({c: [0.5, 0.4] for c in ["noise_10db", "reverb", "noise_5db+gtcrn", "clean", "noise_5db"]},
                         index=["encoder.blocks.0.hook_resid_post", "encoder.blocks.1.hook_resid_post"])
    fig = figures.condition_layers_figure(table, "t", "y")
    assert [t.name for t in fig.data] == ["clean", "noise_5db", "noise_5db+gtcrn", "noise_10db", "reverb"]
