"""The app's per-session state, job table, warm-up logging, URL validation and example selection,
without a browser (issue 21 items 1-3, issue 19 defect 10)."""
from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pandas as pd
import pytest

from apps.data import PartError
from apps.sessions import Sessions, new_session_id


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def sessions(tmp_path):
    s = Sessions(tmp_path / "sessions", ttl_s=100, max_sessions=3, max_uploads=2, max_bytes=8000 * 4, clock=Clock())
    yield s
    s.close()


def test_same_file_name_in_two_sessions_stays_apart(sessions):
    a, b = new_session_id(), new_session_id()
    ka = sessions.add_upload(a, "clip.flac", np.full(1000, 0.25, np.float32))
    kb = sessions.add_upload(b, "clip.flac", np.full(1000, -0.5, np.float32))
    assert sessions.upload(a, ka)[1][0] == pytest.approx(0.25) and sessions.upload(b, kb)[1][0] == pytest.approx(-0.5)
    with pytest.raises(PartError, match="not in this session"):
        sessions.upload(a, kb)  # B's key asked for by A
    assert sessions.upload_path(a, ka).parent.name == a and sessions.upload_path(b, kb).parent.name == b


def test_sessions_expire_and_are_bounded(sessions):
    sids = [new_session_id() for _ in range(4)]
    for i, sid in enumerate(sids):
        sessions._clock.t = i
        sessions.add_upload(sid, "x.wav", np.zeros(100, np.float32))
    assert len(sessions) == 3 and not (sessions.root / sids[0]).exists()  # the least recently seen went
    key = sessions.add_upload(sids[3], "y.wav", np.zeros(100, np.float32))
    sessions._clock.t = 500  # past the idle limit: everything expires, files included
    with pytest.raises(PartError):
        sessions.upload(sids[3], key)
    assert len(sessions) == 0 and list(sessions.root.iterdir()) == []


def test_uploads_per_session_are_bounded_in_number_and_size(sessions):
    sid = new_session_id()
    keys = [sessions.add_upload(sid, f"{i}.wav", np.zeros(1000, np.float32)) for i in range(3)]
    with pytest.raises(PartError):
        sessions.upload(sid, keys[0])  # max_uploads=2: the oldest went
    assert sessions.upload(sid, keys[2])[0] == "2.wav"
    big = sessions.add_upload(sid, "big.wav", np.zeros(7500, np.float32))  # 30 kB of 32 kB: the others go
    assert [p.stem for p in (sessions.root / sid).iterdir()] == [big]
    with pytest.raises(PartError, match="over the session limit"):
        sessions.add_upload(sid, "huge.wav", np.zeros(9000, np.float32))


@pytest.mark.parametrize("bad", ["../x", "", None, "A" * 32, "0" * 31])
def test_session_and_upload_ids_are_checked(sessions, bad):
    with pytest.raises(PartError, match="bad"):
        sessions.add_upload(bad, "x.wav", np.zeros(10, np.float32))
    with pytest.raises(PartError):
        sessions.upload_path(new_session_id(), bad)


def test_job_table_drops_finished_jobs_and_keeps_sessions_apart():
    from apps.live import Jobs

    clock = Clock()
    jobs = Jobs(keep_s=60, collected_s=5, max_finished=3, clock=clock)
    gate = threading.Event()
    jid = jobs.submit(lambda job: gate.wait(5) and 42, session="a")
    assert jobs.status(jid, "b")["known"] is False  # another session's job
    assert jobs.status(jid, "a")["done"] is False
    gate.set()
    assert jobs.wait(jid, session="a")["result"] == 42
    clock.t = 10  # collected 10 s ago > 5 s: dropped
    assert len(jobs) == 0 and jobs.status(jid, "a")["known"] is False
    many = [jobs.submit(lambda job, i=i: i, session="a") for i in range(10)]
    jobs.wait(many[-1], session="a")
    assert len(jobs) <= 3  # never collected, but bounded
    clock.t = 100  # and expired after keep_s
    assert len(jobs) == 0


def test_warm_up_failure_is_a_warning_with_its_reason(tmp_path, caplog, monkeypatch):
    from apps import app as app_module
    from apps.data import Workspace

    ws = Workspace(tmp_path)
    monkeypatch.setattr(Workspace, "saes", lambda self: (_ for _ in ()).throw(OSError("disk went away")))
    with caplog.at_level(logging.WARNING, logger="apps.app"):
        app_module._warm(ws)
    rec = [r for r in caplog.records if r.name == "apps.app"]
    assert rec and rec[0].levelno == logging.WARNING and "disk went away" in rec[0].getMessage()


def test_events_keep_one_example_per_event():
    from apps.examples import events

    rng = np.random.default_rng(0)
    rows = []
    planted = [("a", 1.0), ("a", 4.0), ("b", 2.0), ("c", 0.5)]  # four events, 25 adjacent frames each
    for clip, t0 in planted:
        for i in range(25):
            rows.append({"clip_id": clip, "start_s": t0 + 0.02 * i, "end_s": t0 + 0.02 * (i + 1),
                         "activation": 5 + rng.random()})
    ev = events(pd.DataFrame(rows).sample(frac=1, random_state=0))
    assert len(ev) == 4 and set(ev["n_frames"]) == {25}
    assert sorted(zip(ev["clip_id"], ev["event_start_s"].round(2))) == sorted(planted)
    # null: isolated frames far apart are all separate events
    iso = pd.DataFrame({"clip_id": ["a"] * 5, "start_s": np.arange(5) * 1.0, "end_s": np.arange(5) * 1.0 + 0.02,
                        "activation": np.arange(5.0)})
    assert list(events(iso)["activation"]) == [4.0, 3.0, 2.0, 1.0, 0.0]


def test_quantile_bands_count_every_frame():
    from apps.examples import quantile_bands

    b = quantile_bands(np.arange(1, 101, dtype=float), 5)
    assert list(b["frames"]) == [20] * 5 and b["lo"].iloc[0] == 1 and b["hi"].iloc[-1] == 100


def test_headline_names_a_non_speech_domain_before_phones():
    from apps.examples import headline

    env = {"share_speech": 0.05, "share_environment": 0.94, "share_music": 0.01,
           "top_phones": json.dumps([["EH", 0.37], ["W", 0.17]])}
    assert "environment" in headline(env) and "EH" not in headline(env)
    speech = {**env, "share_speech": 0.9, "share_environment": 0.1}
    assert headline(speech).startswith("speech: EH 0.37")
    assert headline(env, {"explanation": "door slams", "f1": 0.61}) == "“door slams” (held-out F1 0.61)"


def test_url_helpers_name_the_valid_values():
    from apps.pages.common import feature_href, url_choice, url_int

    assert url_choice({"run": "b"}, "run", ["a", "b"], "run") == ("b", None)
    value, note = url_choice({"run": "../etc"}, "run", ["a", "b"], "probe run")
    assert value == "a" and "valid: a, b" in note.children
    assert url_int({"feature": "42"}, "feature", 0, 99, "feature") == (42, None)
    assert url_int({"feature": "f42"}, "feature", 0, 99, "feature")[0] == 42
    value, note = url_int({"feature": "99999"}, "feature", 0, 1535, "feature")
    assert value is None and "valid: 0..1535" in note.children and "KeyError" not in note.children
    assert "not a feature number" in url_int({"feature": "x"}, "feature", 0, 9, "feature")[1].children
    assert feature_href("b1/enc.blocks.1", 7) == "/features?sae=b1%2Fenc.blocks.1&feature=7"


def test_feature_table_id_column_is_numeric():
    from apps.pages.features import columns, feature_rows

    table = pd.DataFrame({"feature": [0, 42], "fires": [3, 9], "density": [0.01, 0.03], "mean_activation": [1.0, 2.0],
                          "share_speech": [0.9, 0.1], "share_music": [0.1, 0.9]})
    rows = feature_rows(table, pd.DataFrame({"explanation": ["vowels"], "f1": [0.7]}, index=pd.Index([42], name="feature")))
    cols = {c["id"]: c["type"] for c in columns(rows)}
    assert cols["feature"] == "numeric" and cols["explanation"] == "text"  # a bare "42" filters as =42
    assert [r["domain"] for r in rows] == ["speech", "music"] and rows[1]["explanation"] == "vowels"


def test_explanations_are_found_where_sae_bench_writes_them(tmp_path):
    from apps.data import SaeRef, Workspace

    ws = Workspace(tmp_path)
    sae_dir = tmp_path / "saes" / "b1" / "enc.h"
    ref = SaeRef("b1", "enc.h", sae_dir, tmp_path / "saes" / "b1" / "eval" / "enc.h")
    assert ws.explanations_file(ref) is None and ws.explanations(ref) is None  # tolerated: no file yet
    for where in (tmp_path / "bench" / "b1" / "enc.h", tmp_path / "saes" / "b1" / "eval" / "enc.h"):
        where.mkdir(parents=True)
        pd.DataFrame({"feature": [3], "explanation": ["vowel AA"], "precision": [0.8], "recall": [0.5],
                      "f1": [0.62]}).to_csv(where / "explanations.csv", index=False)
        assert ws.explanations_file(ref) == where / "explanations.csv"
    assert ws.explanations(ref).loc[3, "explanation"] == "vowel AA"


def test_feature_filters_search_explanations_and_score_only_explained_ones():
    from apps.pages.features import _filter, feature_rows

    table = pd.DataFrame({"feature": [0, 1, 2], "fires": [5, 6, 7], "density": [0.1] * 3, "mean_activation": [1.0] * 3})
    ex = pd.DataFrame({"explanation": ["vowel", "phone S before T", "no rule above chance (best tried: phone K)"],
                       "f1": [0.8, 0.4, 0.6], "above_chance": [True, True, False]}, index=pd.Index([0, 1, 2], name="feature"))
    rows = feature_rows(table, ex)
    assert [r["explained"] for r in rows] == ["yes", "yes", "no"]
    assert [r["feature"] for r in _filter(rows, None, None, "PHONE", None)] == [1, 2]   # text search, any case
    assert [r["feature"] for r in _filter(rows, None, None, None, 0.5)] == [0]         # a best-tried rule's F1 is no score
    assert [r["feature"] for r in _filter(rows, None, None, "phone", 0.3)] == [1]
