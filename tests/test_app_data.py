"""The app's data layer on a workspace built with the CLI: discovery, per-feature examples that
agree with a direct SAE encode, and half-written or missing parts shown as messages, not tracebacks."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app_workspace import HOOK, build

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


@pytest.fixture(scope="session")
def app_ws(tmp_path_factory, tiny_en_wheel) -> Path:
    return build(tmp_path_factory.mktemp("app_ws"))


@pytest.fixture(scope="module")
def ws(app_ws):
    from apps.data import Workspace

    return Workspace(app_ws)


def test_discovers_every_part_with_key_figures(ws):
    parts = {(p.kind, p.name): p for p in ws.parts()}
    assert {k for k, _ in parts} == {"corpora", "caches", "saes", "probes", "steering", "neuro", "conditions"}
    assert all(p.error is None for p in parts.values()), [p.error for p in parts.values() if p.error]
    assert parts[("caches", "tiny")].figures["model"] == "whisper-tiny.en"
    assert parts[("corpora", "synth")].figures["clips"] == 6
    assert parts[("corpora", "synth")].command == "workbench corpus synth --n 6"  # from workspace.json
    sae = parts[("saes", f"block1/{HOOK}")].figures
    assert sae["d_sae"] == 4 * 384 and 0 < sae["fvu"] < 1
    src = ws.token_sources()
    assert [s["name"] for s in src] == ["tokens"] and src[0]["cochleagram"].root.name == "cochleagram"


def test_clip_codes_and_quantile_examples_agree_with_a_direct_encode(ws):
    ref = ws.saes()[0]
    cache, fd = ws.sae_cache(ref), ws.feature_dictionary(ref)
    clip = cache.clip_ids[2]
    frames, codes = ws.clip_codes(ref, clip)
    direct = fd.encode_numpy(cache.load(ref.hook, cache.select(ref.hook, clips=[clip])))
    assert np.array_equal(codes, direct) and set(frames["clip_id"]) == {clip}

    feature = int(ws.feature_table(ref).sort_values("fires", ascending=False)["feature"].iloc[0])
    everything = fd.encode_numpy(cache.load(ref.hook))[:, feature]  # the tiny cache is smaller than the sample
    fired = np.sort(everything[everything > 0])
    ex = ws.quantile_examples(ref, feature, 4)
    assert len(ex) == 4 and np.all(np.diff(ex["activation"]) >= 0)
    for (_, row), lo, hi in zip(ex.iterrows(), np.array_split(fired, 4), np.array_split(fired, 4)):
        assert lo.min() - 1e-5 <= row["activation"] <= hi.max() + 1e-5  # one example from each quartile bin
    # the example frame is where the clip's codes say the feature has that activation
    row = ex.iloc[-1]
    f2, c2 = ws.clip_codes(ref, row["clip_id"])
    assert np.isclose(c2[f2["frame"].to_numpy() == row["frame"], feature][0], row["activation"], atol=1e-4)
    never = np.flatnonzero(fd.encode_numpy(cache.load(ref.hook)).max(0) == 0)
    if len(never):
        assert ws.quantile_examples(ref, int(never[0])).empty


def test_top_frames_examples_are_served_audio_inside_the_workspace(ws):
    ref = ws.saes()[0]
    top = ws.top_frames(ref).iloc[0]
    corpus = ws.sae_cache(ref).corpus
    clip = next(c for c in corpus if c.id == top["clip_id"])
    url = ws.clip_url(corpus, clip, top["start_s"] - 0.5, top["end_s"] + 0.5)
    assert url.startswith("/files/corpora/synth/") and "#t=" in url


@pytest.fixture
def broken_ws(app_ws, tmp_path) -> Path:
    """A copy of the workspace with half-written parts."""
    ws = tmp_path / "broken"
    shutil.copytree(app_ws, ws, symlinks=True)
    feats = ws / "saes" / "block1" / "eval" / HOOK / "features.parquet"
    feats.write_bytes(feats.read_bytes()[:50])  # truncated mid-write
    (ws / "probes" / "phones" / "summary.json").write_text('{"summary": [{"hook"')
    (ws / "neuro" / "fixture" / "summary.csv").unlink()
    (ws / "steering" / "fixture" / "steering.json").write_text(json.dumps({"format": "workbench.steering/1"}))
    (ws / "corpora" / "empty").mkdir()
    return ws


def test_half_written_parts_show_messages_not_tracebacks(broken_ws):
    from apps import create_app
    from apps.app import post_callback
    from apps.data import Workspace

    errors = {(p.kind, p.name): p.error for p in Workspace(broken_ws).parts()}
    assert errors[("saes", f"block1/{HOOK}")] is None  # its weights and eval.json are fine: the page tells
    assert "summary.json" in errors[("probes", "phones")]
    assert "summary.csv" in errors[("neuro", "fixture")] and "missing" in errors[("neuro", "fixture")]
    assert "manifest.jsonl" in errors[("corpora", "empty")]

    app = create_app(broken_ws)
    client = app.server.test_client()
    client.get("/")
    home = post_callback(app, client, "url.pathname", ["/"], [""])
    assert home.status_code == 200 and b"summary.json" in home.data and b"Traceback" not in home.data
    sae = post_callback(app, client, "feat-sae.value", [f"block1/{HOOK}"], [None], "feat-sae-info")
    assert sae.status_code == 200 and b"wb-warn" in sae.data and b"features.parquet" in sae.data
    probe = post_callback(app, client, "probe-run.value", ["phones"], [None], "probe-info")
    assert b"summary.json" in probe.data and b"wb-warn" in probe.data
    eeg = post_callback(app, client, "eeg-run.value", ["fixture"], [None], "eeg-status")
    assert b"summary.csv is missing" in eeg.data
    for path in ("/features", "/tokens", "/probes", "/eeg", "/steering"):
        r = post_callback(app, client, "url.pathname", [path], [""])
        assert r.status_code == 200 and b"Traceback" not in r.data, path


def test_empty_workspace_pages_say_what_to_run(tmp_path):
    from apps import create_app
    from apps.app import post_callback

    app = create_app(tmp_path)
    client = app.server.test_client()
    client.get("/")
    expect = {"/": b"holds none of", "/features": b"workbench sae train", "/tokens": b"auristream-tiny",
              "/probes": b"workbench probe", "/eeg": b"neuro", "/steering": b"workbench steer fit"}
    for path, text in expect.items():
        r = post_callback(app, client, "url.pathname", [path], [""])
        assert r.status_code == 200 and text in r.data and b"wb-warn" in r.data, path


def test_uploaded_clip_gets_the_codes_of_its_cached_frames(app_ws, ws):
    """Upload -> live model run in the worker -> SAE codes: for a clip that is also cached, the same
    features fire at the same frames (the cache holds fp16, so values agree to fp16 precision)."""
    import base64
    import io

    import soundfile as sf

    from apps import create_app
    from apps.app import post_callback
    from workbench.audio import load_audio

    ref = ws.saes()[0]
    cache = ws.sae_cache(ref)
    clip = next(c for c in cache.corpus if c.id == cache.clip_ids[1])
    buf = io.BytesIO()
    sf.write(buf, load_audio(cache.corpus.audio_path(clip), sr=16000), 16000, format="WAV")
    app = create_app(app_ws)
    client = app.server.test_client()
    client.get("/")
    r = post_callback(app, client, "feat-upload.contents",
                      ["data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()],
                      [f"{clip.id}.wav", ref.key, SID])
    assert r.status_code == 200, r.data[:300]
    jid = r.get_json()["response"]["feat-job"]["data"]
    assert app.jobs.status(jid, "f" * 32)["known"] is False  # another session cannot read it
    job = app.jobs.wait(jid, timeout=120, session=SID)
    assert job["error"] is None, job["error"]
    live = job["result"]["codes"]
    _, cached = ws.clip_codes(ref, clip.id)
    assert live.shape == cached.shape
    assert np.abs(live - cached).max() < 0.05 * np.abs(cached).max()
    assert ((live > 0) == (cached > 0)).mean() > 0.99  # the same features fire at the same frames


SID = "5" * 32


def test_output_effect_ablates_and_amplifies_and_is_cached(app_ws, ws):
    """The output-effect button: a live tiny.en run per condition on the feature's top clips; the
    unchanged transcript equals plain decoding; a second request is answered from the cache."""
    from apps import create_app
    from apps.app import post_callback
    from apps.live import model

    ref = ws.saes()[0]
    feature = int(ws.feature_table(ref).sort_values("fires", ascending=False)["feature"].iloc[0])
    app = create_app(app_ws)
    client = app.server.test_client()
    client.get("/")
    r = post_callback(app, client, "feat-effect-go.n_clicks", [1], [ref.key, feature, SID])
    jid = r.get_json()["response"]["feat-effect-job"]["data"]
    job = app.jobs.wait(jid, timeout=300, session=SID)
    assert job["error"] is None, job["error"]
    res = job["result"]
    assert res["feature"] == feature and 1 <= len(res["clips"]) <= 3
    row = res["clips"][0]
    assert {"unchanged", "ablated", "amplified"} <= set(row)
    assert all(len(row[c]["first_tokens"]) == 5 for c in ("unchanged", "ablated", "amplified"))
    from workbench.audio import load_audio

    cache = ws.sae_cache(ref)
    clip = next(c for c in cache.corpus if c.id == row["clip"])
    assert row["unchanged"]["text"] == model("whisper-tiny.en").transcribe(load_audio(cache.corpus.audio_path(clip), sr=16000))
    again = post_callback(app, client, "feat-effect-go.n_clicks", [2], [ref.key, feature, SID]).get_json()["response"]
    assert "feat-effect-job" not in again and "feat-effect-table" in str(again["feat-effect"])  # cached: no new job
