"""The EEG page's layer curve: r on responsive channels by default (what the demo and README rank by),
r on all channels beside it and selectable; tables without r_responsive fall back to r_mean."""
from __future__ import annotations

import numpy as np
import pandas as pd

from apps.pages.eeg import curve_statistic, layer_table, layers_figure


def _layers(responsive=(0.05, 0.30, 0.18)):
    return pd.DataFrame({"feature": ["acoustic", "h0", "h1"], "kind": ["acoustic", "layer", "layer"],
                         "r_mean": [0.02, 0.013, 0.014], "r_sem": [0.01, 0.01, 0.01],
                         "r_responsive": list(responsive), "n_responsive": 3, "order": [0, 1, 2]})


def test_curve_defaults_to_responsive_channels_and_shows_the_all_channel_mean_beside_it():
    df = _layers()
    rows, base = layer_table(df)
    assert rows.attrs["statistic"] == "r_responsive" and base == {"acoustic": 0.05}
    assert rows.loc[rows["r"].idxmax(), "layer"] == "h0"  # r_mean would name h1 (noise)
    assert "r_std" not in rows  # r_sem is an interval of the all-channel mean: not drawn on this curve
    fig = layers_figure(df, "r_responsive", "h0", "run")
    names = [d.name for d in fig.data]
    assert "r on all channels" in names and "3 responsive channels" in fig.layout.title.text
    dotted = next(d for d in fig.data if d.name == "r on all channels")
    np.testing.assert_allclose(dotted.y, [0.013, 0.014])
    picked = layer_table(df, "r_mean")[0]
    assert picked.attrs["statistic"] == "r_mean" and list(picked["r_std"]) == [0.01, 0.01]
    assert "r on responsive channels" in [d.name for d in layers_figure(df, "r_mean", None, "run").data]


def test_no_responsive_channel_or_old_table_falls_back_to_r_mean():
    empty = _layers(responsive=(np.nan, np.nan, np.nan))
    assert curve_statistic(empty) == "r_mean" and curve_statistic(empty, "r_responsive") == "r_mean"
    old = _layers().drop(columns=["r_responsive", "n_responsive"])
    rows, _ = layer_table(old, "r_responsive")
    assert rows.attrs["statistic"] == "r_mean" and list(rows["r"]) == [0.013, 0.014]
    assert [d.name for d in layers_figure(old, "r_responsive", None, "run").data] == ["model features"]
