"""The demo's own figure checks (apps/demo/report.py): met, missed (with a WARNING naming the value) and
not run; token usage; the planted-layer read-back from a simulated recording's sidecar and FDR table."""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from apps.demo.report import _neuro, check_figures, token_usage

BLOCK3 = "whisper-tiny.en/encoder.blocks.3.hook_resid_post"


def _fig(wer_spliced: float, steered: float, codes: int) -> dict:
    return {"saes": {BLOCK3: {"wer_clean": 0.10, "wer_spliced": wer_spliced, "in_sample": False}},
            "steering": {"nonspeech": {"clips": 8, "arms": {"baseline": {"hallucination_rate": 1.0, "wer": 0.2},
                                                            "steered": {"hallucination_rate": steered, "wer": 0.2}}}},
            "neuro": {}, "tokens": {"codes_used": codes, "frames": 10_000, "entropy_bits": 9.0, "perplexity": 512.0}}


def test_met_figures_log_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="apps.demo"):
        checks = check_figures(_fig(0.115, 0.25, 1500))
    assert {k: v["status"] for k, v in checks.items()} == {"sae_wer": "met", "steering": "met",
                                                           "neuro_planted": "not run", "tokens": "met"}
    assert not caplog.records


def test_missed_figures_warn_with_the_measured_value(caplog):
    with caplog.at_level(logging.WARNING, logger="apps.demo"):
        checks = check_figures(_fig(0.13, 1.0, 28))
    assert checks["sae_wer"]["status"] == "missed" and "+3.0 points" in checks["sae_wer"]["value"]
    assert checks["steering"]["status"] == "missed" and checks["tokens"]["status"] == "missed"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "MISSED" in text and "+3.0 points" in text and "28 tokens" in text


def test_in_sample_sae_is_never_met():
    fig = _fig(0.10, 0.0, 2000)
    fig["saes"][BLOCK3]["in_sample"] = True
    assert check_figures(fig, warn=False)["sae_wer"]["status"] == "missed"


def test_token_usage():
    u = token_usage(np.repeat(np.arange(1024), 3))
    assert u["codes_used"] == 1024 and u["frames"] == 3072 and abs(u["entropy_bits"] - 10) < 1e-6
    assert u["perplexity"] == 1024.0 and token_usage(np.zeros(50, int))["perplexity"] == 1.0


def _workspace(tmp_path, r_planted: float):
    """A simulated recording (planted envelope on Cz, CPz) and a neuro fit whose curve and FDR follow r_planted."""
    (tmp_path / "recordings/simulated").mkdir(parents=True)
    (tmp_path / "recordings/simulated/sub-sim_eeg.json").write_text(
        json.dumps({"planted": ["Cz", "CPz"], "source": "envelope", "r": 0.3}))
    out = tmp_path / "neuro/simulated"
    out.mkdir(parents=True)
    feats = ["envelope", "encoder.blocks.1.hook_resid_post"]
    pd.DataFrame({"feature": feats, "r_mean": [r_planted, 0.01]}).to_csv(out / "layers.csv", index=False)
    rows = [{"feature": f, "channel": c, "r": r_planted if f == "envelope" else 0.0,
             "p_fdr": 0.001 if (f == "envelope" and r_planted > 0.05) else 0.9}
            for f in feats for c in ("Cz", "CPz", "Oz")]
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)


def test_planted_layer_recovered_and_null(tmp_path):
    _workspace(tmp_path / "hit", 0.2)
    hit = _neuro(tmp_path / "hit")["simulated"]["planted"]
    assert hit["feature"] == hit["best"] == "envelope" and hit["channels_fdr"] == ["CPz", "Cz"]
    assert check_figures({"neuro": {"simulated": {"planted": hit}}}, warn=False)["neuro_planted"]["status"] == "met"
    _workspace(tmp_path / "null", 0.0)  # nothing recovered: another layer wins, no planted channel passes
    null = _neuro(tmp_path / "null")["simulated"]["planted"]
    assert null["best"] != "envelope" and null["n_channels_fdr"] == 0
    assert check_figures({"neuro": {"simulated": {"planted": null}}}, warn=False)["neuro_planted"]["status"] == "missed"
