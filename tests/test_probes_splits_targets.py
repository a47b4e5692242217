"""Grouped splits never leak groups; targets: phone folding, top-N words, control types, segment pooling."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold

from probes.splits import LeakageError, check_disjoint, grouped_kfold
from probes.targets import PHONES_39, build_target, fold_phone, subsample


def test_speaker_folds_are_disjoint_and_cover_everything():
    rng = np.random.default_rng(0)
    speakers = rng.choice([f"spk{i}" for i in range(7)], size=500)
    splits = grouped_kfold(speakers, folds=5, seed=3)
    assert len(splits) == 5
    seen_test = np.concatenate([te for _, te in splits])
    assert sorted(seen_test) == list(range(500))  # every row is tested exactly once
    for tr, te in splits:
        assert not set(speakers[tr]) & set(speakers[te])
        assert len(tr) + len(te) == 500


@pytest.mark.filterwarnings("ignore:The groups parameter is ignored")
def test_leakage_check_fires_on_a_splitter_that_ignores_groups():
    speakers = np.repeat(["a", "b", "c", "d"], 25)
    with pytest.raises(LeakageError, match="share"):
        grouped_kfold(speakers, splitter=KFold(4, shuffle=True, random_state=0))
    with pytest.raises(AssertionError):  # LeakageError is an AssertionError, raised in code
        check_disjoint(np.array([0, 1]), np.array([2, 3]), np.array(["a", "b", "b", "c"]))
    check_disjoint(np.array([0, 1]), np.array([2, 3]), np.array(["a", "a", "b", "c"]))


def test_folds_capped_at_number_of_groups_and_bad_groups():
    splits = grouped_kfold(np.repeat(["a", "b", "c"], 4), folds=5)
    assert len(splits) == 3
    with pytest.raises(ValueError, match="at least 2"):
        grouped_kfold(np.repeat(["a"], 4))
    with pytest.raises(ValueError, match="None"):
        grouped_kfold(np.array(["a", None, "b"], dtype=object))


def test_fold_phone():
    assert fold_phone("IY1") == "IY" and fold_phone("ax") == "AH" and fold_phone("sp") == "sil"
    assert fold_phone("") == "sil" and fold_phone(None) is None and fold_phone("XYZ") is None
    assert fold_phone(float("nan")) is None and fold_phone("ZH") == "SH"
    assert all(fold_phone(p) == p for p in PHONES_39) and len(PHONES_39) == 39 and "sil" in PHONES_39


def frames_table():
    """Two clips (two speakers); phones with a gap (-1) in clip a; same segment index in both clips."""
    return pd.DataFrame({
        "clip_id": ["a"] * 6 + ["b"] * 4,
        "frame": list(range(6)) + list(range(4)),
        "speaker": ["s1"] * 6 + ["s2"] * 4,
        "domain": ["speech"] * 10,
        "phones": ["sil", "AH1", "AH1", None, "T", "T", "sil", "sil", "IY0", "IY0"],
        "phones_seg": [0, 1, 1, -1, 2, 2, 0, 0, 1, 1],
        "words": [None, "the", "the", None, "cat", "cat", None, None, "the", "the"],
        "words_seg": [-1, 0, 0, -1, 1, 1, -1, -1, 0, 0],
    })


def test_segment_pooling_averages_the_frames_of_each_segment():
    frames = frames_table()
    X = np.arange(10, dtype=np.float32)[:, None] * np.array([[1.0, 10.0]], np.float32)  # row i -> (i, 10 i)
    t = build_target(frames, "phones", split="speaker", pooling="segment")
    assert t.y.tolist() == ["sil", "AH", "T", "sil", "IY"]
    assert t.groups.tolist() == ["s1", "s1", "s1", "s2", "s2"]
    feats = t.features(X[t.rows])
    expected = [[0], [1, 2], [4, 5], [6, 7], [8, 9]]  # frame 3 (gap) never enters a segment
    np.testing.assert_allclose(feats[:, 0], [np.mean(e) for e in expected])
    np.testing.assert_allclose(feats[:, 1], [10 * np.mean(e) for e in expected])
    assert 3 not in t.rows
    with pytest.raises(ValueError, match="rows"):
        t.features(X)


def test_frame_pooling_clip_pooling_words_and_context_types():
    frames = frames_table()
    t = build_target(frames, "phones", split="clip", pooling="frame")
    assert len(t) == 9 and t.groups.tolist()[:2] == ["a", "a"]
    # context types: the label with its neighbouring segment labels, unique per clip boundary
    assert t.types[1] == "sil|AH|None" and t.types[0] == "None|sil|AH"
    assert build_target(frames, "phones", control_types="label").types.tolist() == t.y.tolist()
    w = build_target(frames, "words:1", pooling="segment")
    assert w.y.tolist() == ["the", "the"]  # "the" has 2 tokens, "cat" 1: top-1 keeps "the"
    c = build_target(frames, "speaker", split="clip", pooling="clip")
    assert c.y.tolist() == ["s1", "s2"] and c.pool.shape == (2, 10)
    assert c.types.tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="tier"):
        build_target(frames, "speaker", pooling="segment")
    with pytest.raises(KeyError, match="unknown target"):
        build_target(frames, "nope")


def test_missing_speaker_is_its_own_group_and_subsample_is_consistent():
    frames = frames_table()
    frames.loc[frames.clip_id == "b", "speaker"] = None
    t = build_target(frames, "phones", split="speaker")  # the one group rule: no speaker -> the clip
    assert set(t.groups[np.isin(t.rows, np.flatnonzero(frames.clip_id == "b"))]) == {"b"}
    frames["room"] = frames["speaker"]
    with pytest.raises(ValueError, match="have no room"):  # a plain column split still needs values
        build_target(frames, "phones", split="room")
    t = build_target(frames_table(), "phones", pooling="segment")
    s = subsample(t, 3, seed=1)
    X = np.arange(10, dtype=np.float32)[:, None]
    full = dict(zip(map(tuple, t.features(X[t.rows]).tolist()), t.y))
    for f, y in zip(s.features(X[s.rows]).tolist(), s.y):
        assert full[tuple(f)] == y  # subsampled samples keep their own frames and labels
