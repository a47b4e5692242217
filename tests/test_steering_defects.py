"""Steering defects of issues 19 and 22, each with a test that failed on the old code: effect sizes at a
large offset, the group null with mixed groups, the sweep without transcripts, bootstrap draws with a zero
baseline, ``Steering.with_`` and devices, and hand-edited ``steering.json`` values."""
from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sae.steer.metrics import summarize
from sae.steer.selection import _null_labels, effect_sizes, select_features
from sae.steer.sweep import RULE_BUDGET, RULE_NO_REFERENCES, run_sweep
from workbench.steering import Steering

D, M = 16, 48
HOOK = "encoder.blocks.0.hook_resid_post"


def two_pass_d(x: np.ndarray, y: np.ndarray) -> float:
    """Reference: Cohen's d with the two class variances averaged, two passes in float64."""
    x = np.asarray(x, dtype=np.float64)
    a, b = x[y], x[~y]
    va, vb = ((a - a.mean()) ** 2).mean(), ((b - b.mean()) ** 2).mean()
    return float((a.mean() - b.mean()) / np.sqrt((va + vb) / 2))


def test_effect_sizes_match_a_two_pass_reference_at_a_large_offset():
    rng = np.random.default_rng(0)
    y = rng.random(20_000) < 0.5
    X = np.stack([3000 + rng.normal(size=len(y)) + 0.21 * y, rng.normal(size=len(y)) + 0.5 * y], 1).astype(np.float32)
    d = effect_sizes(X, y[:, None])[:, 0]
    ref = [two_pass_d(X[:, j], y) for j in range(2)]
    np.testing.assert_allclose(d, ref, rtol=1e-6)
    assert abs(d[0] - 0.21) < 0.04  # the one-pass float32 formula gave 0.11


def test_group_null_keeps_groups_that_mix_classes():
    groups = np.repeat(np.arange(10), 100)
    y = np.concatenate([np.arange(100) < 10 * g for g in range(10)])  # group g: g/10 of its frames in the concept
    shares = sorted(y[groups == g].mean() for g in range(10))
    rng = np.random.default_rng(0)
    for _ in range(5):
        draw = _null_labels(y, groups, "clip", rng)
        assert sorted(draw[groups == g].mean() for g in range(10)) == pytest.approx(shares)
    # single-label groups: the classic permutation of whole groups
    y1 = groups % 2 == 0
    draw = _null_labels(y1, groups, "clip", rng)
    assert all(len(set(draw[groups == g])) == 1 for g in range(10)) and draw.sum() == y1.sum()


def test_mixed_groups_with_no_signal_select_nothing():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(16), 60)
    y = rng.random(len(groups)) < np.repeat(rng.uniform(0.2, 0.8, 16), 60)
    group_level = np.repeat(rng.normal(size=(16, 20)), 60, 0)  # features that vary by group only
    Z = np.abs(group_level + 0.3 * rng.normal(size=(len(y), 20)))
    assert select_features(Z, y, groups, n_permutations=100, seed=0).selected == []


class _Stub:
    """A model and a steering whose 'edit' is its strength: strength >= 2 empties the transcript."""

    def __init__(self, strength=0.0):
        self.strength = strength
        self.active = 0.0

    def with_(self, strength, n_features=None):
        return _Stub(strength)

    def applied(self, model):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            model.active = self.strength
            yield self
            model.active = 0.0
        return ctx()

    def transcribe(self, audio):
        return ["" if self.active >= 2 else "you" for _ in audio]


def test_sweep_without_transcripts_warns_and_records_its_rule(caplog):
    model, grid = _Stub(), [{"n_features": 1, "strength": 1.0}, {"n_features": 1, "strength": 2.0}]
    with caplog.at_level(logging.WARNING, logger="sae.steer.sweep"):
        table, best = run_sweep(model, _Stub(), [np.zeros(10)] * 3, [None] * 3, [True] * 3, grid, verbose=False)
    assert "WER budget" in caplog.text and "cannot be checked" in caplog.text
    assert best["rule"] == RULE_NO_REFERENCES and (table["rule"] == RULE_NO_REFERENCES).all()
    assert best["strength"] == 2.0 and best["hallucination_rate"] == 0.0
    # with transcripts the budget applies and the rule says so
    table, best = run_sweep(model, _Stub(), [np.zeros(10)] * 2, ["you", None], [False, True], grid, verbose=False)
    assert best["rule"] == RULE_BUDGET and best["baseline"]  # emptying the speech clip costs all its words


class _WerOnly(_Stub):
    """Strength 1 fixes a word of speech but leaves every non-speech clip hallucinated."""

    def with_(self, strength, n_features=None):
        return _WerOnly(strength)

    def transcribe(self, audio):
        return ["you" if self.active == 1 else "you too" for _ in audio]


def test_sweep_keeps_plain_decoding_when_no_setting_lowers_hallucinations():
    """An edit that changes only the dev WER (here by one word) is not chosen: the hallucination rate ties."""
    model, grid = _WerOnly(), [{"n_features": 1, "strength": 1.0}]
    table, best = run_sweep(model, _WerOnly(), [np.zeros(10)] * 2, ["you", None], [False, True], grid, verbose=False)
    assert table["hallucination_rate"].tolist() == [1.0, 1.0] and table["wer"].tolist() == [1.0, 0.0]
    assert best["baseline"]


def test_bootstrap_drop_interval_covers_the_truth_at_low_baseline_rates():
    """Simulated paired clips: plain decoding hallucinates on 10% of 40 clips, steering removes each with
    probability 0.7 (true drop 0.7). Dropping draws with a zero baseline rate covered 70% of the time."""
    rng, hits, total = np.random.default_rng(1), 0, 0
    for s in range(150):
        base = rng.random(40) < 0.1
        steered = base & (rng.random(40) < 0.3)
        if not base.any():
            continue
        total += 1
        m = summarize({"baseline": ["you" if b else "" for b in base], "steered": ["you" if b else "" for b in steered]},
                      [None] * 40, [True] * 40, n_boot=300, seed=s)["steered"]
        lo, hi = m["hallucination_drop_ci"]
        hits += (lo is None or lo <= 0.7) and 0.7 <= hi
    assert hits / total >= 0.82


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sae")
    g = torch.Generator().manual_seed(0)
    W = torch.randn(D, M, generator=g) / D**0.5
    save_file({"W_enc": W, "b_enc": torch.zeros(M), "W_dec": W.T.contiguous(), "b_dec": torch.zeros(D),
               "threshold": torch.full((M,), 0.05)}, str(d / "sae_weights.safetensors"))
    (d / "cfg.json").write_text(json.dumps({"d_in": D, "d_sae": M, "hook_name": HOOK}))
    return d


def test_with_never_moves_the_shared_dictionary(sae_dir):
    st = Steering(model="random-whisper", hook=HOOK, d_model=D, method="sae", edit="scale", strength=3.0,
                  features=[{"index": 3}, {"index": 5}], sae=str(sae_dir))
    x = torch.randn(4, D)
    before = st.edit_fn()(x)
    other = st.with_(strength=2.0)
    assert other.dictionary is st.dictionary  # loaded once, shared read-only
    out = other.edit_fn()(x.to("meta"))  # another device: gets its own copy
    assert out.device.type == "meta"
    assert st.dictionary.W_enc.device.type == "cpu" and st.dictionary.b_dec.device.type == "cpu"
    assert torch.equal(st.edit_fn()(x), before)


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("field,value,expect", [
    ("strength", float("nan"), "'strength' must be a finite number"),
    ("features", [{"index": -1}], "'features[0].index' must be a non-negative integer"),
    ("features", [{"index": 999999}], "field 'features': indices [999999] are outside the SAE"),
    ("features", [3, 5], "'features[0]' must be an object with an 'index'"),
    ("features", [{"index": 2, "target": float("inf")}], "'features[0].target' must be a finite number"),
    ("n_features", "2", "'n_features' must be a non-negative integer"),
])
def test_edited_steering_json_gets_one_clear_error(sae_dir, tmp_path, capsys, field, value, expect):
    from workbench.cli import main

    art = tmp_path / "st"
    good = Steering(model="whisper-tiny.en", hook=HOOK, d_model=D, method="sae", edit="scale", strength=2.0,
                    features=[{"index": 3}, {"index": 5}], sae=str(sae_dir))
    good.save(art)
    d = json.loads((art / "steering.json").read_text())
    d[field] = value
    if field == "features":
        d["n_features"] = len(value)
    (art / "steering.json").write_text(json.dumps(d))
    before = _digest(art)
    code = main(["steer", "eval", "--steering", str(art), "--corpus", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "ev"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(art / "steering.json") in err and expect in err, err
    assert "Traceback" not in err
    assert _digest(art) == before and not (tmp_path / "ev").exists()
