"""The app's figure functions and table helpers, without a browser."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from apps import figures
from apps.pages.eeg import layer_table, trf_axes
from apps.pages.features import feature_options, feature_rows
from apps.pages.tokens import usage
from apps.spectrogram import log_mel


def test_histogram_bars_sit_on_bin_centres():
    fig = figures.histogram_figure({"edges": [0.0, 1.0, 3.0], "counts": [5, 2]})
    bar = fig.data[0]
    assert list(bar.x) == [0.5, 2.0] and list(bar.width) == [1.0, 2.0] and list(bar.y) == [5, 2]


def test_activation_figure_overlays_trace_and_keeps_tiers_in_window():
    times, freqs, db = log_mel(np.random.default_rng(0).standard_normal(16000).astype(np.float32), offset_s=2.0)
    assert times[0] == 2.0 and db.shape == (80, len(times)) and db.max() == 0.0
    at = np.linspace(2.0, 3.0, 50)
    tiers = {"phones": [(1.0, 1.5, "AA"), (2.1, 2.4, "B"), (2.4, 2.9, "IY")], "words": [(2.0, 2.9, "bee")]}
    fig = figures.activation_figure(times, freqs, db, at, np.sin(at), tiers, marker=(2.3, 2.32))
    kinds = [t.type for t in fig.data]
    assert kinds == ["heatmap", "scatter", "bar", "bar"] and fig.data[1].yaxis == "y2"  # activation on a 2nd axis
    assert [list(t.text) for t in fig.data[2:]] == [["B", "IY"], ["bee"]]  # "AA" lies before the window
    assert list(fig.data[3].base) == [2.0] and np.isclose(fig.data[3].x[0], 0.9)  # word bar from 2.0 s to 2.9 s
    fig.to_json()  # a valid figure spec
    assert fig.data[0].colorscale[0][1] == "#000004"  # Magma's stops, not a name plotly.js does not know


def test_features_over_time_ranks_by_peak_and_drops_silent_features():
    codes = np.zeros((20, 6), np.float32)
    codes[5, 3], codes[6, 1], codes[7, 4] = 9.0, 4.0, 1.0
    fig = figures.features_over_time_figure(np.arange(20) * 0.02, codes)
    assert list(fig.data[0].y) == ["f3", "f1", "f4"]
    empty = figures.features_over_time_figure(np.arange(20) * 0.02, np.zeros((20, 6)))
    assert "no feature fires" in empty.layout.annotations[0].text


def test_cochleagram_tokens_marks_the_chosen_token():
    t = np.arange(10) / 200
    tokens = np.array([1, 2, 2, 3, 1, 1, 2, 0, 0, 1])
    fig = figures.cochleagram_tokens_figure(t, np.ones((10, 211)), tokens, highlight=1)
    marks = [d for d in fig.data if d.type == "scatter"][0]
    assert np.allclose(marks.x, t[tokens == 1])
    assert np.asarray(fig.data[0].z).shape == (211, 10)


def test_token_patch_is_channels_by_offset_with_hz_ticks():
    patch = np.zeros((21, 211))
    patch[10, 50] = 1.0  # the token's own frame, channel 50
    fig = figures.token_patch_figure(np.arange(-10, 11) / 200, patch, centre_hz=np.geomspace(50, 8000, 211))
    z = np.asarray(fig.data[0].z)
    assert z.shape == (211, 21) and z[50, 10] == 1.0 and list(fig.data[0].x)[10] == 0.0
    assert fig.layout.yaxis.ticktext[0] == "50" and fig.layout.yaxis.ticktext[-1] == "8000"


def test_token_usage_statistics():
    ids = np.repeat(np.arange(8), 10)  # uniform over 8 tokens: 3 bits
    counts, stats = usage(ids)
    assert stats["distinct tokens"] == 8 and stats["entropy (bits)"] == 3.0 and stats["perplexity"] == 8.0
    _, skewed = usage(np.r_[np.zeros(70, int), np.arange(1, 11)])
    assert skewed["entropy (bits)"] < 3.0
    fig = figures.token_usage_figure(pd.Series({5: 1, 7: 30, 2: 4}))
    assert list(fig.data[0].y) == [30, 4, 1] and list(fig.data[0].customdata) == [7, 2, 5]


def test_probe_layers_highlight_the_chosen_layer():
    summary = pd.DataFrame({"hook": ["encoder.blocks.0.hook_resid_post", "encoder.blocks.1.hook_resid_post"],
                            "accuracy": [0.4, 0.6], "accuracy_std": [0.01, 0.02], "majority": [0.2, 0.2],
                            "selectivity": [0.1, 0.3], "selectivity_std": [0.0, 0.0]})
    fig = figures.probe_layers_figure(summary, "encoder.blocks.1.hook_resid_post")
    sel = [d for d in fig.data if d.name == "selected layer"]
    assert len(sel) == 1 and list(sel[0].x) == ["blocks.1.resid_post"] and list(sel[0].y) == [0.6]
    assert not [d for d in figures.probe_layers_figure(summary, None).data if d.name == "selected layer"]


def test_confusion_is_row_normalised():
    conf = pd.DataFrame([[3, 1], [0, 4]], index=["a", "b"], columns=["a", "b"])
    z = np.asarray(figures.probe_confusion_figure(conf).data[0].z)
    assert np.allclose(z, [[0.75, 0.25], [0.0, 1.0]])


def test_eeg_layer_table_separates_baselines():
    df = pd.DataFrame({"layer": ["envelope", "blocks.0", "blocks.1"], "kind": ["baseline", "model", "model"],
                       "r": [0.05, 0.1, 0.2]})
    rows, base = layer_table(df)
    assert list(rows["layer"]) == ["blocks.0", "blocks.1"] and base == {"envelope": 0.05}
    fig = figures.eeg_layers_figure(rows, base, "blocks.1")
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].y0 == 0.05  # the baseline line
    assert [list(d.x) for d in fig.data if d.name == "selected layer"] == [["blocks.1"]]
    neuro_layout = pd.DataFrame({"feature": ["h1", "acoustic", "h0"], "kind": ["layer", "acoustic", "layer"],
                                 "hook": ["h1", None, "h0"], "r_mean": [0.3, 0.1, 0.2], "r_sem": [0.01, 0.01, 0.02],
                                 "order": [2, 0, 1]})
    rows, base = layer_table(neuro_layout)
    assert list(rows["layer"]) == ["h0", "h1"] and list(rows["r_std"]) == [0.02, 0.01] and base == {"acoustic": 0.1}
    named = pd.DataFrame({"hook": ["spectrogram", "h0"], "r": [0.1, 0.3], "baseline_envelope": [0.02, 0.02]})
    rows, base = layer_table(named)
    assert list(rows["layer"]) == ["h0"] and base == {"spectrogram": 0.1, "envelope": 0.02}
    with pytest.raises(Exception, match="expected a layer"):
        layer_table(pd.DataFrame({"x": [1]}))


def test_trf_axes_finds_the_lag_axis():
    k = np.arange(6 * 50, dtype=float).reshape(6, 50)  # [channels, lags]
    lags, kern, what = trf_axes(k, {"sfreq": 100.0, "tmin": -0.1})
    assert kern.shape == (50, 6) and math.isclose(lags[0], -0.1) and math.isclose(lags[1] - lags[0], 0.01)
    assert np.array_equal(kern[:, 2], k[2]) and what == "weight"
    mne_order = np.random.default_rng(0).standard_normal((6, 3, 50))  # [channels, inputs, lags]
    lags, kern, what = trf_axes(mne_order, {"kernel_lags_s": list(np.arange(50) / 100)})
    assert kern.shape == (50, 6) and "RMS" in what
    assert np.allclose(kern[:, 1], np.sqrt((mne_order[1] ** 2).mean(0)))
    lags, kern, _ = trf_axes(mne_order[:, :1], {"kernel_lags_s": list(np.arange(50) / 100)})
    assert np.array_equal(kern[:, 4], mne_order[4, 0])  # one input: the signed kernel itself
    assert len(figures.trf_figure(lags, kern).data) == 6


def test_eeg_channels_colour_significant_channels():
    s = pd.DataFrame({"channel": ["Cz", "Fz"], "r": [0.1, 0.3], "p_fdr": [0.5, 0.01]})
    fig = figures.eeg_channels_figure(s)
    assert list(fig.data[0].x) == ["Fz", "Cz"] and list(fig.data[0].marker.color) == ["#d62728", "#7f7f7f"]


def test_pareto_has_sweep_reference_points_and_chosen_setting():
    sweep = pd.DataFrame({"n_features": [1, 2], "strength": [0.0, 1.0], "wer": [0.2, 0.3],
                          "hallucination_rate": [0.4, 0.1]})
    refs = {"baseline": {"wer": 0.19, "hallucination_rate": 0.5}, "vad_gate": {"wer": 0.2, "hallucination_rate": 0.3},
            "broken": {"wer": None}}
    fig = figures.pareto_figure(sweep, refs, {"wer": 0.3, "hallucination_rate": 0.1})
    assert [d.name for d in fig.data] == ["sweep", "baseline", "vad_gate", "steered"]
    assert list(fig.data[0].text) == ["n_features=1, strength=0.0", "n_features=2, strength=1.0"]
    # dev sweep and held-out arms on separate axes (issue 21: they were drawn on one)
    assert fig.data[0].xaxis == "x" and {d.xaxis for d in fig.data[1:]} == {"x2"}
    assert fig.layout.xaxis.domain[1] < fig.layout.xaxis2.domain[0]


def test_feature_table_rows_and_options():
    table = pd.DataFrame({"feature": [0, 1], "fires": [3, 9], "density": [0.01, 0.03], "mean_activation": [1.23456, 2.0],
                          "top_phones": ['[["AA", 0.5], ["B", 0.25]]', "[]"]})
    rows = feature_rows(table)
    assert rows[0]["top_phones"] == "AA 0.50, B 0.25" and rows[0]["mean_activation"] == 1.2346
    assert [o["value"] for o in feature_options(table)] == [1, 0]  # most firing first


def test_log_mel_equals_transformers_spectrogram():
    import numpy as np
    from transformers.audio_utils import spectrogram, window_function

    from apps import spectrogram as sp

    audio = np.random.default_rng(1).standard_normal(12345).astype(np.float32)
    ref = spectrogram(audio, window_function(sp.N_FFT, "hann"), frame_length=sp.N_FFT, hop_length=sp.HOP, power=2.0,
                      mel_filters=sp._filters(), log_mel=None)
    ours = sp._mel_power(audio)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * ref.max())
