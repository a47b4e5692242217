"""sweep() over a cache (an in-memory stand-in with the ActivationCache reading API), reports, CLI, SAE features."""
from __future__ import annotations

import argparse
import importlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from probes import LinearProbe, sweep
from probes.cli import register
from probes.report import write_report
from probes.sae_features import topk_feature_curve, topk_sweep
from probes.splits import grouped_kfold
from workbench.features import FeatureDictionary, load_feature_dictionaries

PHONES = ["sil", "AH", "T", "IY", "S", "K"]
FAST = LinearProbe(C=1.0)  # fixed L2 where the C selection is not what a test is about


class FakeCache:
    """Frames of 16 clips by 4 speakers; h0 is noise, h1 weakly and h2 strongly encode the phone,
    h2 also encodes the speaker strongly (so a leaky split would show)."""

    def __init__(self, seed=0, d=24):
        rng = np.random.default_rng(seed)
        rows = []
        for c in range(16):
            seg_labels = rng.choice(PHONES, size=12)
            seg_len = rng.integers(2, 6, size=12)
            frame = 0
            for s, (lab, n) in enumerate(zip(seg_labels, seg_len)):
                for _ in range(n):
                    rows.append({"clip_id": f"c{c}", "frame": frame, "speaker": f"spk{c % 4}", "domain": "speech",
                                 "phones": str(lab), "phones_seg": s})
                    frame += 1
        self._frames = pd.DataFrame(rows)
        n = len(self._frames)
        y = self._frames["phones"].map({p: i for i, p in enumerate(PHONES)}).to_numpy()
        spk = self._frames["speaker"].str[-1].astype(int).to_numpy()
        E, S = rng.normal(size=(len(PHONES), d)), rng.normal(size=(4, d))
        noise = rng.normal(size=(3, n, d))
        self._acts = {
            "encoder.blocks.0.hook_resid_post": noise[0],
            "encoder.blocks.1.hook_resid_post": 0.4 * E[y] + noise[1],
            "encoder.blocks.2.hook_resid_post": 3.0 * E[y] + 1.0 * S[spk] + 0.5 * noise[2],
        }
        self.hooks = list(self._acts)
        self.root = "fake"
        self.clip_ids = sorted(self._frames["clip_id"].unique())
        # what the CLI records about a cache (workbench.cache.inputs): a finished build of 16 clips
        self.meta = {"complete": True, "corpus": {"fingerprint": "fake", "clips": 16}, "model": {"spec": "fake"},
                     "hooks": self.hooks, "dtype": "float32"}

    def frames(self, hook=None):
        return self._frames.copy()

    def load(self, hook, rows=None):
        a = self._acts[hook]
        return (a if rows is None else a[np.asarray(rows)]).astype(np.float32)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    fake = FakeCache()
    root = tmp_path_factory.mktemp("fake_cache")  # the files the CLI's completeness and fingerprint checks read
    (root / "cache.json").write_text('{"complete": true}')
    (root / "index.json").write_text('{"final": {}}')
    fake.root = root
    return fake


@pytest.fixture(scope="module")
def result(cache):
    return sweep(cache, "phones", split="speaker", folds=4, verbose=False)


def test_sweep_layer_curve_and_controls(result):
    s = result.summary.set_index("hook")
    noise, weak, strong = (s.loc[f"encoder.blocks.{i}.hook_resid_post"] for i in range(3))
    assert strong["accuracy"] > 0.95 and strong["selectivity"] > 0.3
    assert weak["majority"] + 0.1 < weak["accuracy"] < strong["accuracy"]
    assert noise["accuracy"] < noise["majority"] + 0.1  # no signal, no finding
    assert (result.folds["shuffled_accuracy"] <= result.folds["shuffled_upper"]).all()
    assert len(result.folds) == 3 * 4 and list(s["layer"]) == [0, 1, 2]
    assert result.best_hook == "encoder.blocks.2.hook_resid_post"
    conf = result.confusion[result.best_hook]
    assert conf.shape == (6, 6) and conf.to_numpy().sum() == strong["n_samples"]
    assert sorted(result.classes) == sorted(PHONES) == sorted(conf.columns)
    assert np.trace(conf.to_numpy()) / conf.to_numpy().sum() == pytest.approx(
        np.average(result.folds.loc[result.folds.hook == result.best_hook, "accuracy"],
                   weights=result.folds.loc[result.folds.hook == result.best_hook, "n_test"]))


def test_speaker_split_never_leaks(cache):
    """h2 encodes speaker identity: with split='speaker' no test speaker was seen, so speaker accuracy is 0;
    a clip split (same speakers on both sides) decodes it almost perfectly."""
    hook = "encoder.blocks.2.hook_resid_post"
    by_speaker = sweep(cache, "speaker", hooks=hook, split="speaker", folds=4, probe=FAST, verbose=False)
    assert (by_speaker.folds["accuracy"] == 0).all()
    by_clip = sweep(cache, "speaker", hooks=hook, split="clip", folds=4, probe=FAST, verbose=False)
    assert by_clip.summary["accuracy"].iloc[0] > 0.95
    groups = cache.frames()["speaker"].to_numpy()
    for tr, te in grouped_kfold(groups, folds=4):
        assert not set(groups[tr]) & set(groups[te])


def test_segment_pooling_sweep_and_hook_globs(cache):
    res = sweep(cache, "phones", hooks="encoder.blocks.[12].*", pooling="segment", folds=4, probe=FAST,
                verbose=False)
    assert list(res.summary["hook"]) == [f"encoder.blocks.{i}.hook_resid_post" for i in (1, 2)]
    assert res.summary["n_samples"].iloc[0] == 16 * 12  # one sample per segment
    with pytest.raises(KeyError, match="matches no hook"):
        sweep(cache, "phones", hooks="decoder.*", verbose=False)


def test_report_files_and_resume(cache, result, tmp_path, monkeypatch):
    paths = write_report(result, tmp_path / "out")
    for key in ("folds", "summary", "summary_json", "layers_html", "confusion", "confusion_html"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    doc = json.loads(paths["summary_json"].read_text())
    assert doc["best_hook"] == result.best_hook and len(doc["summary"]) == 3
    assert pd.read_csv(paths["summary"])["accuracy"].round(6).tolist() == result.summary["accuracy"].round(6).tolist()
    assert (tmp_path / "out" / "plotly.min.js").is_file()  # figures open offline
    ck = tmp_path / "ck"
    first = sweep(cache, "phones", folds=4, checkpoint_dir=ck, probe=FAST, verbose=False)

    def boom(*a, **k):
        raise AssertionError("a finished hook was recomputed")

    # probes.sweep the attribute is the function; the module is in sys.modules
    monkeypatch.setattr(importlib.import_module("probes.sweep"), "probe_folds", boom)
    again = sweep(cache, "phones", folds=4, checkpoint_dir=ck, probe=FAST, verbose=False)
    pd.testing.assert_frame_equal(first.summary, again.summary)


def write_sae(path, W_enc, b_enc, b_dec, threshold, hook):
    path.mkdir(parents=True)
    d_in, d_sae = W_enc.shape
    (path / "cfg.json").write_text(json.dumps({"d_in": d_in, "d_sae": d_sae, "hook_name": hook,
                                               "architecture": "jumprelu"}))
    save_file({"W_enc": W_enc, "b_enc": b_enc, "b_dec": b_dec, "threshold": threshold,
               "W_dec": W_enc.T.contiguous()}, str(path / "sae_weights.safetensors"))


def test_sae_encoder_matches_jumprelu_and_sweep_on_codes(cache, tmp_path):
    g = torch.Generator().manual_seed(0)
    d, m = 24, 64
    W = torch.randn(d, m, generator=g)
    b_enc, b_dec, thr = torch.randn(m, generator=g), torch.randn(d, generator=g), torch.rand(m, generator=g)
    hook = "encoder.blocks.2.hook_resid_post"
    write_sae(tmp_path / "saes" / "b2", W, b_enc, b_dec, thr, hook)
    enc = FeatureDictionary.load(tmp_path / "saes" / "b2")
    x = cache.load(hook, np.arange(50))
    pre = (torch.from_numpy(x) - b_dec) @ W + b_enc
    expected = torch.where(pre > thr, pre, torch.zeros(())).numpy()
    np.testing.assert_allclose(enc.encode(x), expected, rtol=1e-5, atol=1e-5)
    assert set(load_feature_dictionaries(tmp_path / "saes")) == {hook}
    res = sweep(cache, "phones", features=str(tmp_path / "saes"), folds=4, probe=FAST, verbose=False)
    assert list(res.summary["hook"]) == [hook] and (res.folds["d_features"] == m).all()
    assert res.summary["accuracy"].iloc[0] > 0.8
    with pytest.raises(ValueError, match="expected"):
        enc.encode(x[:, :5])
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        FeatureDictionary.load(tmp_path)
    curve = topk_sweep(cache, "phones", tmp_path / "saes", ks=(1, 8, 64), folds=4, probe=FAST, verbose=False)
    assert set(curve["k"]) == {1, 8, 64} and (curve["hook"] == hook).all()


def test_topk_features_find_the_planted_feature():
    """Only feature 7 carries the class: it ranks first in every fold and k=1 already probes well."""
    rng = np.random.default_rng(0)
    n = 1200
    y = rng.integers(0, 3, size=n)
    X = np.abs(rng.normal(size=(n, 40))) * (rng.random((n, 40)) < 0.2)  # sparse, code-like noise
    X[:, 7] = y * 2.0 + 0.3 * rng.random(n)
    groups = np.repeat(np.arange(6), n // 6)
    curve = topk_feature_curve(X, y, grouped_kfold(groups, folds=3), ks=(1, 2, 40), groups=groups)
    assert all(f[0] == 7 for f in curve.loc[curve.k == 1, "features"])
    acc = curve.groupby("k")["accuracy"].mean()
    assert acc[1] > 0.95 and acc[40] > 0.95
    null = topk_feature_curve(np.delete(X, 7, axis=1), y, grouped_kfold(groups, folds=3), ks=(1, 39), groups=groups)
    assert null["accuracy"].max() < 0.45  # no planted feature: chance (3 classes)


def test_cli_writes_the_report(cache, tmp_path, monkeypatch, capsys):
    import workbench.cache

    monkeypatch.setattr(workbench.cache.ActivationCache, "open", classmethod(lambda cls, root: cache))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "probe"
    args = parser.parse_args(["probe", "--cache", "x", "--target", "phones", "--folds", "3", "--C", "1", "--out", str(out),
                              "--hooks", "encoder.blocks.2.*", "encoder.blocks.0.*"])
    assert args.func(args) == 0
    assert "best layer: encoder.blocks.2.hook_resid_post" in capsys.readouterr().out
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["hook"]) == ["encoder.blocks.0.hook_resid_post", "encoder.blocks.2.hook_resid_post"]
    assert (out / "layers.html").is_file() and (out / "confusion.html").is_file()


@pytest.mark.parametrize("threshold", [0.05, -1.0])
def test_sae_encoder_reads_the_sae_package_format(tmp_path, threshold):
    """Format contract with the sae package (read without importing it in probes): same codes."""
    import sae  # part of this project: a broken package must fail here, not skip
    model = sae.BatchTopKSAE(sae.SAEConfig(d_in=16, expansion=4, k=3, hook_name="encoder.blocks.1.hook_resid_post"))
    with torch.no_grad():
        model.b_enc.normal_()
        model.threshold.fill_(threshold)  # learned JumpReLU threshold, or none (top-k per frame)
    sae.save_sae(model, tmp_path / "s")
    enc = FeatureDictionary.load(tmp_path / "s")
    x = torch.randn(64, 16)
    assert enc.hook_name == "encoder.blocks.1.hook_resid_post"
    np.testing.assert_allclose(enc.encode(x.numpy()), model.encode(x).detach().numpy(), rtol=1e-5, atol=1e-5)
