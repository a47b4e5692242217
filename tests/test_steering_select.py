"""sae.steer selection (planted features found, shuffled labels select nothing), metrics, sweep choice, splits."""
from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest

from sae.steer.data import clip_group, split_by_group
from sae.steer.metrics import summarize
from sae.steer.selection import class_mean_direction, concept_labels, select_features
from sae.steer.sweep import pareto_front, run_sweep, settings, write_sweep
from workbench.corpus import Clip, Corpus


def planted_codes(seed=0, n_clips=40, frames=60, d_sae=200, planted=(11, 42)):
    """Sparse codes; the planted features fire on a share of the concept clips' frames only."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_clips), frames)
    clip_y = rng.permutation(np.arange(n_clips) % 2 == 0)
    y = clip_y[groups]
    Z = np.abs(rng.normal(size=(len(y), d_sae))) * (rng.random((len(y), d_sae)) < 0.1)
    clip_level = np.abs(rng.normal(size=(n_clips, d_sae))) * 0.5  # clip-specific offsets: frames are not independent
    Z += clip_level[groups] * (rng.random((len(y), d_sae)) < 0.1)
    for j, f in enumerate(planted):
        Z[y, f] += (rng.random(y.sum()) < 0.5 - 0.1 * j) * 1.5
    return Z.astype(np.float32), y, groups


def test_selection_finds_the_planted_features():
    Z, y, groups = planted_codes()
    sel = select_features(Z, y, groups, "clip", n_permutations=200, seed=0)
    assert sel.selected[:2] == [11, 42]
    assert sel.scores.loc[11, "auroc"] > 0.7 and sel.scores.loc[11, "p_perm"] < 0.01
    assert len(sel.selected) <= 4  # nothing much beyond the planted pair passes the bar
    rec = sel.records(1)[0]
    assert rec["index"] == 11 and rec["fire_rate_concept"] > rec["fire_rate_rest"]


def test_shuffled_labels_select_nothing():
    """Labels balanced against the concept (half of each class positive): at the 5% family-wise level
    at most one of ten shuffles may select any feature."""
    Z, y, groups = planted_codes(seed=1)
    clip_y = np.array([y[groups == g][0] for g in range(40)])
    rng = np.random.default_rng(5)
    found = []
    for trial in range(10):
        pos = np.concatenate([rng.choice(np.flatnonzero(clip_y), 10, replace=False),
                              rng.choice(np.flatnonzero(~clip_y), 10, replace=False)])
        null_y = np.isin(np.arange(40), pos)[groups]
        found.append(select_features(Z, null_y, groups, "clip", n_permutations=200, seed=trial).selected)
    assert sum(bool(f) for f in found) <= 1, found


def test_frame_level_concept_uses_a_within_clip_null():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 80)
    phase = np.tile(np.arange(80), 20)
    y = (phase // 10) % 2 == 0  # e.g. "silence" runs inside each clip
    Z = np.abs(rng.normal(size=(len(y), 50))) * (rng.random((len(y), 50)) < 0.2)
    Z[y, 3] += 1.0
    sel = select_features(Z, y, groups, "frame", n_permutations=100, seed=0)
    assert sel.selected[0] == 3
    shifted = np.roll(y.reshape(20, 80), 5, axis=1).reshape(-1)
    Z2 = np.abs(rng.normal(size=Z.shape)) * (rng.random(Z.shape) < 0.2)
    assert select_features(Z2, shifted, groups, "frame", n_permutations=100, seed=1).selected == []


def test_class_mean_direction_recovers_a_planted_direction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 32))
    y = rng.random(4000) < 0.4
    u = rng.normal(size=32)
    X[y] += 0.8 * u
    res = class_mean_direction(X, y)
    got = np.asarray(res["direction"])
    assert got @ u / (np.linalg.norm(got) * np.linalg.norm(u)) > 0.95
    assert res["auroc"] > 0.9
    null = class_mean_direction(rng.normal(size=(4000, 32)), y)
    assert null["auroc"] < 0.6 and null["norm"] < 0.3 * res["norm"]


def test_concept_labels():
    frames = pd.DataFrame({"domain": ["speech", "music", "environment", "music"], "clip_id": list("abcd")})
    y, valid, level = concept_labels(frames, "nonspeech")
    assert y.tolist() == [False, True, True, True] and level == "clip" and valid.all()
    assert concept_labels(frames, "domain=music")[0].tolist() == [False, True, False, True]
    tiers = {"phones": ["sil", "AH", None, "sil"]}
    y, valid, level = concept_labels(frames, "phones=sil", tier_labels=tiers.get)
    assert y.tolist() == [True, False, False, True] and valid.tolist() == [True, True, False, True] and level == "frame"
    with pytest.raises(ValueError, match="domain 'speechy'"):
        concept_labels(frames, "domain=speechy")
    with pytest.raises(ValueError, match="unknown concept"):
        concept_labels(frames, "speech")


def test_metrics_and_intervals():
    refs = ["a b c d", "e f g h", None, None, None, None]
    ns = [False, False, True, True, True, True]
    m = summarize({"baseline": ["a b c d", "e f g h", "you", "you", "you", "."],
                   "steered": ["a b c", "e f g h", "", "you", ".", "!"]}, refs, ns, n_boot=500, seed=0)
    b, s = m["baseline"], m["steered"]
    assert b["hallucination_rate"] == 0.75 and b["hallucinated"] == 3 and b["wer"] == 0.0  # "." normalizes to empty
    assert s["hallucination_rate"] == 0.25 and s["wer"] == pytest.approx(1 / 8)
    assert s["hallucination_drop"] == pytest.approx(1 - 0.25 / 0.75) and s["wer_change"] == pytest.approx(0.125)
    lo, hi = s["hallucination_ci"]
    assert lo <= 0.25 <= hi and lo < hi
    assert b["n_nonspeech"] == 4 and b["n_speech"] == 2 and b["reference_words"] == 8


class FakeModel:
    """Transcribes 'you' for non-speech until the strength reaches 8; garbles speech from strength 16."""

    def __init__(self, kinds):
        self.kinds, self.strength = kinds, 0.0

    def transcribe(self, audio):
        out = []
        for k in self.kinds:
            if k == "ns":
                out.append("" if self.strength >= 8 else "you")
            else:
                out.append("one two three four" if self.strength < 16 else "one two")
        return out


class FakeSteering:
    def __init__(self, strength=0.0, n=None):
        self.strength, self.n = strength, n

    def with_(self, strength, n_features=None):
        return FakeSteering(strength, n_features)

    @contextlib.contextmanager
    def applied(self, model):
        model.strength = self.strength
        yield
        model.strength = 0.0


def test_sweep_picks_the_largest_drop_within_the_wer_budget(tmp_path):
    kinds = ["ns"] * 4 + ["sp"] * 3
    refs = [None] * 4 + ["one two three four"] * 3
    grid = settings("sae", [1, 4, 99], [4.0, 8.0, 32.0], available=6)
    assert [g["n_features"] for g in grid] == [1, 1, 1, 4, 4, 4, 6, 6, 6]
    table, best = run_sweep(FakeModel(kinds), FakeSteering(), [None] * 7, refs, [k == "ns" for k in kinds], grid,
                            max_wer_increase=0.005, verbose=False)
    assert (best["n_features"], best["strength"], best["hallucination_rate"], best["wer"]) == (1, 8.0, 0.0, 0.0)
    assert table.loc[table.strength == 32.0, "within_budget"].eq(False).all()
    write_sweep(table, tmp_path, "test")
    assert (tmp_path / "pareto.html").stat().st_size > 1000 and len(pd.read_csv(tmp_path / "sweep.csv")) == 10
    front = pareto_front(table)
    assert front.iloc[0]["hallucination_rate"] == 0.0 and front.iloc[0]["wer"] == 0.0
    # nothing helps within the budget: the baseline (no edit) is chosen
    _, none = run_sweep(FakeModel(kinds), FakeSteering(), [None] * 7, refs, [k == "ns" for k in kinds],
                        [{"n_features": 2, "strength": 32.0}], verbose=False)
    assert none["baseline"]


def test_split_keeps_groups_together():
    clips = [Clip(f"m{i}", "x.flac", "music", extra={"source_id": f"src{i // 6}"}) for i in range(36)]
    clips += [Clip(f"s{i}", "x.flac", "speech", speaker=f"v{i % 5}", transcript="hi") for i in range(25)]
    splits = split_by_group(Corpus(clips), {"fit": 0.5, "dev": 0.2, "eval": 0.3}, seed=0)
    seen = {}
    for name, corpus in splits.items():
        assert {c.domain for c in corpus} == {"music", "speech"}, name
        for c in corpus:
            assert seen.setdefault(clip_group(c), name) == name
    assert sum(len(c) for c in splits.values()) == 61


class LoopingBaselineModel(FakeModel):
    """Plain decoding loops on one speech clip; from strength 8 on every speech clip is garbled."""

    def transcribe(self, audio):
        out = []
        for i, k in enumerate(self.kinds):
            if k == "ns":
                out.append("" if self.strength >= 8 else "you")
            elif self.strength >= 8:
                out.append("one")
            else:
                out.append("one two three four" + (" four" * 40 if i == len(self.kinds) - 1 and not self.strength else ""))
        return out


def test_sweep_budget_is_not_fooled_by_a_looping_baseline_clip():
    # pooled WER: baseline 40 insertions / 12 words = 3.33, strength 8 garbles everything (9/12 = 0.75) and
    # would look like a WER gain; capped per clip the baseline is 4/12 and strength 8 is over budget
    kinds = ["ns"] * 4 + ["sp"] * 3
    refs = [None] * 4 + ["one two three four"] * 3
    table, best = run_sweep(LoopingBaselineModel(kinds), FakeSteering(), [None] * 7, refs,
                            [k == "ns" for k in kinds], [{"n_features": 2, "strength": 8.0}], verbose=False)
    assert table.loc[1, "wer"] < table.loc[0, "wer"]  # the trap: pooled WER says "better"
    assert table.loc[0, "wer_capped"] == 4 / 12 and table.loc[1, "wer_capped"] == 9 / 12
    assert best["baseline"] and not table.loc[1, "within_budget"]
