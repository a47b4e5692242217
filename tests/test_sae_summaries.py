"""Metrics and per-feature summaries on a hand-built SAE whose answers are known exactly."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from sae import BatchTopKSAE, SAEConfig
from sae.metrics import density_histogram, evaluate, to_json
from sae.summaries import feature_summaries


def _basis_sae(d: int = 4) -> BatchTopKSAE:
    """Feature j reads and writes the j-th coordinate; threshold 0.5: codes are the inputs above 0.5."""
    sae = BatchTopKSAE(SAEConfig(d_in=d, expansion=2, k=2))
    with torch.no_grad():
        eye = torch.zeros(2 * d, d)
        eye[:d] = torch.eye(d)
        sae.W_enc.copy_(eye)
        sae.W_dec.copy_(torch.cat([torch.eye(d), torch.eye(d)]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.threshold.fill_(0.5)
    return sae


def test_evaluate_matches_hand_computed_values():
    sae = _basis_sae()
    X = torch.tensor([[1.0, 0.2, 0.0, 0.0], [0.0, 2.0, 0.0, 0.7], [0.0, 0.0, 0.0, 0.0]])
    m = evaluate(sae, [X[:2], X[2:]])
    x_hat = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0.7], [0, 0, 0, 0]])
    sse = float((X - x_hat).pow(2).sum())
    assert m["fvu"] == pytest.approx(sse / float((X - X.mean(0)).pow(2).sum()))
    assert m["l0"] == pytest.approx(3 / 3) and m["frames"] == 3
    assert m["dead_frac"] == pytest.approx(5 / 8)  # features 2, 4..7 never fire; 0, 1, 3 do
    assert m["dense_frac"] == pytest.approx(3 / 8)  # each live feature fires on >= 1/3 of frames
    assert json.dumps(to_json(m))  # JSON-safe


def test_density_histogram_writes_html(tmp_path):
    fig = density_histogram(np.array([0.0, 0.01, 0.1, 0.5]), tmp_path / "d.html")
    assert (tmp_path / "d.html").stat().st_size > 1000 and "1 dead" in fig.layout.title.text


def test_feature_summaries_top_frames_labels_and_domains(tmp_path):
    sae = _basis_sae()
    rng = np.random.default_rng(0)
    n = 60
    X = torch.zeros(n, 4)
    phones = np.where(np.arange(n) % 2 == 0, "AA", "S").astype(object)
    domains = np.where(np.arange(n) < 40, "speech", "music").astype(object)
    X[:, 0] = torch.from_numpy(np.where(phones == "AA", 1 + rng.random(n), 0.0)).float()  # feature 0 <-> AA
    X[:, 1] = torch.from_numpy(np.where(domains == "music", 1 + rng.random(n), 0.0)).float()  # feature 1 <-> music
    frames = pd.DataFrame({"clip_id": [f"c{i // 10}" for i in range(n)], "start_s": np.arange(n) * 0.02,
                           "end_s": np.arange(n) * 0.02 + 0.02, "domain": domains, "phones": phones})
    res = feature_summaries(sae, X, frames, tmp_path, top_n=3)
    feats = res["features"].set_index("feature")
    assert json.loads(feats.loc[0, "top_phones"])[0] == ["AA", 1.0]
    assert feats.loc[1, "share_music"] == pytest.approx(1.0) and feats.loc[0, "share_speech"] == pytest.approx(0.5, abs=0.1)
    assert feats.loc[0, "fires"] == 30 and feats.loc[2, "fires"] == 0
    top0 = res["top_frames"][res["top_frames"].feature == 0]
    best = int(np.argmax(X[:, 0].numpy()))
    assert top0.iloc[0]["row"] == best and top0.iloc[0]["clip_id"] == f"c{best // 10}" and len(top0) == 3
    assert list(top0["activation"]) == sorted(top0["activation"], reverse=True)
    assert sum(res["histograms"][0]["counts"]) == 30
    for name in ("features.parquet", "top_frames.parquet", "histograms.json", "features.json"):
        assert (tmp_path / name).is_file()
    assert len(pd.read_parquet(tmp_path / "features.parquet")) == 8


def test_feature_whose_activations_agree_to_float_precision_gets_a_histogram():
    """Two activations 5e-5 apart at 1000 (float32): np.histogram alone refuses 20 bins ('Too many bins')."""
    sae = _basis_sae()
    X = torch.zeros(4, 4)
    X[:2, 0] = torch.tensor([1000.0, 1000.00006])
    X[2:, 1] = torch.tensor([1.0, 3.0])
    frames = pd.DataFrame({"clip_id": ["a"] * 4, "start_s": np.arange(4) * 0.02})
    hist = feature_summaries(sae, X, frames)["histograms"]
    assert sum(hist[0]["counts"]) == 2 and len(hist[0]["edges"]) == 21
    assert hist[0]["edges"][0] <= 1000.0 <= hist[0]["edges"][-1]
    assert hist[1]["edges"][0] == 1.0 and hist[1]["edges"][-1] == 3.0  # ordinary ranges unchanged
