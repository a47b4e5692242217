"""Warm-up and threshold start scale with the run length: a short run is not spent warming up."""
from __future__ import annotations

import pytest

from sae import TrainConfig, train
from sae.metrics import evaluate
from sae.synthetic import planted_dictionary


def test_short_runs_get_a_10_percent_warmup_long_runs_keep_1000_steps():
    short = TrainConfig(tokens=491_520, batch_size=4096)  # the 120-step run
    assert short.steps == 120 and short.warmup == 12 and short.threshold_start == 12
    assert short.lr_factor(11) == 1.0 and short.lr_factor(60) == 1.0  # full lr from step 12 until the decay
    assert 0.85 < short.threshold_ema < 0.95  # the threshold EMA still moves in the 108 steps it runs
    long = TrainConfig(tokens=50_000_000 * 4, batch_size=4096)
    assert long.warmup == 1000 and long.threshold_start == 1000 and long.threshold_ema == pytest.approx(0.999)
    assert TrainConfig(tokens=4096, batch_size=4096).warmup == 1  # a one-step run still steps
    with pytest.raises(ValueError, match="schedule_frac"):
        TrainConfig(schedule_frac=0)


def _run(**kw):
    data = planted_dictionary(n=20_000, d=32, n_atoms=128, active=4, noise=0.01, seed=3)
    held = planted_dictionary(n=4000, d=32, n_atoms=128, active=4, noise=0.01, seed=3).X
    cfg = TrainConfig(expansion=4, k=4, tokens=60 * 512, batch_size=512, lr=1e-2, threads=1, dtype="float32", **kw)
    sae = train({"h": data.X}, cfg=cfg, verbose=False)["h"]
    return {m: evaluate(sae, [held], mode=m) for m in ("threshold", "batch_topk")}


def test_short_run_trains_past_the_warmup_and_its_threshold_follows():
    scaled = _run()
    half_warm = _run(schedule_frac=0.5)  # warm-up over half the run, as a too-long warm-up does
    # 60 steps: a 6-step warm-up reaches a clearly better reconstruction than a 30-step one
    assert scaled["batch_topk"]["fvu"] < half_warm["batch_topk"]["fvu"] - 0.02
    # the JumpReLU threshold learned in the run's last 54 steps matches the training rule
    assert scaled["threshold"]["fvu"] < 1.05 * scaled["batch_topk"]["fvu"]
    assert 3.0 < scaled["threshold"]["l0"] < 5.0  # k = 4
