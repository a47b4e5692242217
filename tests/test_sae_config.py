"""TrainConfig = Recipe (what a paper reports) + Runtime (how a machine runs it): the split, the
effective recipe recorded in train_config.json, and old flat configs still read."""
from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch

from sae import Recipe, Runtime, TrainConfig, train
from sae.config import RECIPE_FIELDS, RUNTIME_FIELDS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_two_parts_cover_the_config_once():
    assert set(RECIPE_FIELDS) | set(RUNTIME_FIELDS) == {f.name for f in fields(TrainConfig)}
    assert not set(RECIPE_FIELDS) & set(RUNTIME_FIELDS)
    assert {"dtype", "threads", "checkpoint_every", "log_every"} <= set(RUNTIME_FIELDS)
    assert {"expansion", "k", "lr", "tokens", "batch_size", "auxk_alpha", "seed"} <= set(RECIPE_FIELDS)
    cfg = TrainConfig(k=8, tokens=1000, threads=1, dtype="float32")
    assert cfg.recipe == Recipe(k=8, tokens=1000) and cfg.runtime == Runtime(threads=1, dtype="float32")
    assert TrainConfig.from_dict({"recipe": cfg.recipe.effective(), "runtime": {"threads": 1, "dtype": "float32"}}) \
        .recipe.effective() == cfg.recipe.effective()


def test_old_flat_configs_still_read():
    old = {"expansion": 4, "k": 16, "tokens": 4096, "batch_size": 256, "lr": None, "betas": [0.9, 0.999],
           "bf16": False, "threads": 2, "checkpoint_every": 500, "log_every": 50, "seed": 3}
    cfg = TrainConfig.from_dict(old)
    assert cfg.dtype == "float32" and cfg.k == 16 and cfg.betas == (0.9, 0.999) and cfg.recipe.seed == 3
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_train_config_json_records_the_effective_recipe(tmp_path):
    x = torch.randn(2048, 16, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(expansion=4, k=4, tokens=2048, batch_size=256, dtype="float32", threads=1)
    train({"h": x}, cfg=cfg, out=tmp_path / "run", verbose=False)
    conf = json.loads((tmp_path / "run" / "train_config.json").read_text())
    rec = conf["recipe"]
    # what ran, not what was asked for: 8 steps cap the 1000-step warm-up and threshold start at 1;
    # the default lr (None) is resolved for d_sae = 64
    assert rec["steps"] == 8 and rec["frames"] == 2048
    assert rec["warmup_steps"] == 1 and rec["threshold_start_step"] == 1 and rec["threshold_beta"] == 0.0
    assert rec["lr"] == pytest.approx(2e-4 / (64 / 2**14) ** 0.5)
    assert conf["runtime"]["threads"] == 1 and conf["runtime"]["compute_dtype"] == "float32"
    again = TrainConfig.from_dict({"recipe": rec, "runtime": conf["runtime"]})
    assert again.recipe.effective(64) == rec  # the recorded recipe reproduces itself
    assert TrainConfig.from_dict(conf["train"]) == cfg  # the flat form stays for older readers
