"""Issue 22 case 2: every part name a client sends (the probe, steering and EEG run pickers, the
live-steering Run button) resolves inside the workspace. ``../`` and absolute paths get the same
message as any unknown name, listing the valid ones: no result from outside is shown and the
message does not reveal whether the outside path exists."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

SECRET = "outside-secret-7f3a"


@pytest.fixture
def layout(tmp_path) -> tuple[Path, Path]:
    """A workspace with one probe, steering and neuro run each, and look-alike runs outside it."""
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    for root, tag in ((ws, "inside"), (outside, SECRET)):
        probe = root / "probes" / "run"
        probe.mkdir(parents=True)
        (probe / "summary.json").write_text(json.dumps({
            "config": {"target": tag, "split": "speaker", "folds": 2}, "best_hook": "h0",
            "summary": [{"hook": "h0", "accuracy": 0.5}]}))
        steer = root / "steering" / "run"
        steer.mkdir(parents=True)
        (steer / "steering.json").write_text(json.dumps({"model": tag, "hook": "h0", "method": "sae", "features": []}))
        neuro = root / "neuro" / "run"
        neuro.mkdir(parents=True)
        pd.DataFrame({"feature": [tag], "channel": ["Cz"], "r": [0.1]}).to_csv(neuro / "summary.csv", index=False)
    return ws, outside


@pytest.fixture
def app(layout):
    from apps import create_app

    return create_app(layout[0])


HOSTILE = ["../outside/probes/run", "../../outside", "/etc", "../../etc", "run/../../outside/probes/run", "..", ""]


STATE = {"probe-run.value": ([None], "probe-info"), "steer-run.value": ([], "steer-info"),
         "eeg-run.value": ([None], "eeg-status")}


def _body(app, first_input: str, value, state=None) -> str:
    from apps.app import post_callback

    st, out = STATE.get(first_input, ([], ""))
    r = post_callback(app, app.server.test_client(), first_input, [value], list(state if state is not None else st), out)
    assert r.status_code in (200, 204), r.data[:300]
    return json.dumps(json.loads(r.get_data(as_text=True) or "{}"))  # "/" unescaped


@pytest.mark.parametrize("first_input", ["probe-run.value", "steer-run.value", "eeg-run.value"])
def test_run_pickers_stay_inside_the_workspace(app, layout, first_input):
    _, outside = layout
    kind = {"probe": "probes", "steer": "steering", "eeg": "neuro"}[first_input.split("-")[0]]
    assert "inside" in _body(app, first_input, "run")  # the workspace's own run is shown
    for bad in HOSTILE + [str(outside / kind / "run"), str(outside / "missing")]:
        body = _body(app, first_input, bad)
        assert SECRET not in body, (first_input, bad)
        assert "runs: run" in body, (first_input, bad, body[:300])  # the valid names, not a traceback
        assert "Error" not in body.replace("PartError", ""), body[:300]
    # an existing and a missing outside path get the same answer (nothing about the outside leaks)
    a = _body(app, first_input, "../../outside").replace("../../outside", "X")
    b = _body(app, first_input, "../../nowhere").replace("../../nowhere", "X")
    assert a == b


def test_live_steering_run_refuses_outside_artifacts(app):
    body = _body(app, "steer-go.n_clicks", 1, ["../outside/steering/run", {"clip": "x"}, [], 1.0, None, None,
                                                    "0" * 32])
    assert SECRET not in body and "runs: run" in body


def test_part_dir_is_an_allow_list(layout):
    from apps.data import PartError, Workspace

    ws, outside = layout
    w = Workspace(ws)
    assert w.part_dir("probes", "run") == ws / "probes" / "run"
    (ws / "probes" / "link").symlink_to(outside / "probes" / "run")  # a symlinked run pointing out
    for bad in ("link", "../outside/probes/run", str(outside / "probes" / "run"), None, 3):
        with pytest.raises(PartError, match="runs: run"):
            w.part_dir("probes", bad)


def test_density_pages_are_served_from_sae_folders_only(tmp_path):
    from apps import create_app

    ws = tmp_path / "ws"
    for d in ("saes/s/eval", "probes/p"):
        (ws / d).mkdir(parents=True)
        (ws / d / "density.html").write_text("<html>density</html>")
        (ws / d / "plotly.min.js").write_text("/* js */")
    (ws / "saes" / "s" / "eval" / "other.html").write_text("<html>other</html>")
    client = create_app(ws).server.test_client()
    assert client.get("/files/saes/s/eval/density.html").status_code == 200
    assert client.get("/files/saes/s/eval/plotly.min.js").status_code == 200
    for bad in ("/files/probes/p/density.html", "/files/probes/p/plotly.min.js", "/files/saes/s/eval/other.html",
                "/files/saes/s/eval/../../../probes/p/density.html"):
        assert client.get(bad).status_code == 404, bad
