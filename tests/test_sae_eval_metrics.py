"""Metrics that an outlier cannot hide: per-frame relative error beside pooled FVU, per domain; and the
layer table/plot of several SAEs' evaluations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sae.metrics import evaluate, evaluate_by_domain
from sae.summaries import layer_figure, layer_summary, layer_table


class Shrink:
    """An "SAE" that reconstructs frames along ``keep`` exactly and shrinks everything else by ``1 - err``."""

    def __init__(self, d, keep, err):
        self.d_in = self.d_sae = d
        self.keep, self.err = keep, err

    def encode(self, x, mode=None):
        along = (x @ self.keep)[:, None] * self.keep
        return torch.relu(along + (1 - self.err) * (x - along)) - torch.relu(-(along + (1 - self.err) * (x - along)))

    def decode(self, z):
        return z


def test_massive_frames_hide_typical_error_in_fvu_not_in_per_frame_error():
    """Planted: 2% of frames have 25x the norm along one direction, reconstructed exactly; the rest
    lose 30% of their norm. FVU looks excellent, the per-frame relative error says 0.3."""
    rng = np.random.default_rng(0)
    d, n = 16, 5000
    keep = torch.zeros(d)
    keep[0] = 1.0
    X = torch.from_numpy(rng.standard_normal((n, d))).float()
    X[:, 0] = 0
    massive = rng.random(n) < 0.02
    X[torch.from_numpy(massive)] = 0
    X[torch.from_numpy(massive), 0] = 25 * float(np.sqrt(d)) * torch.from_numpy(np.sign(rng.standard_normal(massive.sum()))).float()
    m = evaluate(Shrink(d, keep, 0.3), [X])
    assert m["fvu"] < 0.1
    assert m["rel_error_median"] == pytest.approx(0.3, abs=1e-4) and m["rel_error_q90"] == pytest.approx(0.3, abs=1e-4)
    exact = evaluate(Shrink(d, keep, 0.0), [X])  # null: a perfect reconstruction has no error either way
    assert exact["fvu"] < 1e-10 and exact["rel_error_median"] < 1e-6


def test_metrics_per_domain_split_the_frames():
    rng = np.random.default_rng(1)
    X = torch.from_numpy(rng.standard_normal((300, 8))).float()
    dom = np.array(["speech"] * 200 + ["music"] * 100)
    keep = torch.zeros(8)
    by = evaluate_by_domain(Shrink(8, keep, 0.5), X, dom)
    assert set(by) == {"all", "speech", "music"}
    assert by["speech"]["frames"] == 200 and by["music"]["frames"] == 100 and by["all"]["frames"] == 300
    assert by["music"]["rel_error_median"] == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(ValueError, match="domain labels"):
        evaluate_by_domain(Shrink(8, keep, 0.5), X, dom[:10])


def _result(hook, fvu, wer_change):
    m = {"frames": 100, "fvu": fvu, "l0": 50.0, "dead_frac": 0.0, "cosine": 0.9, "rel_error_median": 0.2}
    return {"hook": hook, "in_sample": False, "metrics": m,
            "metrics_by_domain": {"all": m, "speech": {**m, "frames": 60}, "music": {**m, "frames": 40}},
            "splice": {"wer_clean": 0.1, "wer_spliced": 0.1 + wer_change, "wer_change": wer_change,
                       "wer_distribution": {"median": 0.0, "max": wer_change}, "rel_error_hook": 0.2,
                       "rel_error_output": 0.3, "per_domain": {"speech": {"rel_error_hook": 0.25, "rel_error_output": 0.3}}}}


def test_layer_table_orders_layers_numerically_and_writes_csv_and_html(tmp_path):
    hooks = [f"encoder.blocks.{i}.hook_resid_post" for i in (10, 2, 0)]
    results = [_result(h, 0.01 * (i + 1), 0.05 * i) for i, h in enumerate(hooks)]
    table = layer_table(results)
    assert list(table.loc[table["domain"] == "all", "layer"]) == [0, 2, 10]
    row = table[(table["hook"] == hooks[0]) & (table["domain"] == "speech")].iloc[0]
    assert row["frames"] == 60 and row["rel_error_hook"] == 0.25 and row["wer_change"] == 0.0
    music = table[table["domain"] == "music"]
    assert music["wer_change"].isna().all() and music["rel_error_hook"].isna().all()
    layer_summary(results, tmp_path)
    csv = pd.read_csv(tmp_path / "layers.csv")
    assert len(csv) == 9 and (tmp_path / "layers.html").read_text().count("scatter") >= 1


def test_layer_figure_keeps_one_colour_and_one_legend_entry_per_domain():
    hooks = [f"encoder.blocks.{i}.hook_resid_post" for i in range(3)]
    fig = layer_figure(layer_table([_result(h, 0.01 * (i + 1), 0.05 * i) for i, h in enumerate(hooks)]))
    colours, legend = {}, []
    for tr in fig.data:
        colours.setdefault(tr.name, set()).add(tr.line.color)
        if tr.showlegend:
            legend.append(tr.name)
    assert set(colours) == {"all", "speech", "music"}
    assert all(len(c) == 1 for c in colours.values()) and len(set.union(*colours.values())) == 3
    assert sorted(legend) == ["all", "music", "speech"]
    panels = {tr.xaxis for tr in fig.data if tr.name == "all"}
    assert len(panels) == 5  # FVU, per-frame error, L0, dead, WER change
    assert "per-frame rel. error (median)" in [a.text for a in fig.layout.annotations]
