"""The SAE trainer's compute dtype: ``--dtype auto|bfloat16|float32`` (``--no-bf16`` a deprecated
alias), the decision recorded in train_config.json, and resuming on a machine that picks another dtype."""
from __future__ import annotations

import argparse
import json
import logging

import pytest
import torch

from sae import TrainConfig, train
from sae.cli import _dtype_arg, register
from sae.data import TensorSource
from sae.synthetic import planted_dictionary
from workbench import compute


def _parse(*argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sae", "train", "--cache", "c", "--hook", "h", "--out", "o", *argv])


def test_cli_dtype_option_and_deprecated_alias(caplog):
    assert _dtype_arg(_parse()) == "auto"
    assert _dtype_arg(_parse("--dtype", "bfloat16")) == "bfloat16"
    with caplog.at_level(logging.WARNING):
        assert _dtype_arg(_parse("--no-bf16")) == "float32"
    assert "deprecated" in caplog.text
    with pytest.raises(SystemExit):
        _parse("--dtype", "float8")


def test_config_maps_the_old_bf16_flag():
    assert TrainConfig(bf16=False).dtype == "float32" and TrainConfig(bf16=True).dtype == "bfloat16"
    assert TrainConfig.from_dict({"bf16": False, "tokens": 4096}).dtype == "float32"  # an old train_config.json
    assert TrainConfig().dtype == "auto"
    with pytest.raises(ValueError, match="unknown dtype"):
        TrainConfig(dtype="int8")


def _cfg(**kw):
    return TrainConfig(**{**dict(expansion=4, k=3, tokens=12 * 256, batch_size=256, lr=5e-3, checkpoint_every=6,
                                 threads=1, scale_estimate_frames=256), **kw})


class _KilledInEpoch1(TensorSource):
    """11 batches an epoch here: killed at step 11, after the checkpoint of step 6."""

    def _epoch_part(self, epoch, rank, world_size):
        if epoch >= 1:
            raise KeyboardInterrupt
        return super()._epoch_part(epoch, rank, world_size)


def test_auto_decision_is_recorded_and_used(tmp_path, monkeypatch):
    compute._auto.cache_clear()
    monkeypatch.setattr(compute, "cpu_bf16_flags", lambda: None)
    monkeypatch.setattr(compute, "probe_cpu_matmul", lambda: (0.05, 0.001))  # bf16 emulated: 50x slower
    import sae.model

    seen, real = [], sae.model.encode_select

    def spy(*a, dtype=None, **k):  # the dtype the encoder matmul runs in
        seen.append(dtype)
        return real(*a, dtype=dtype, **k)

    monkeypatch.setattr(sae.model, "encode_select", spy)
    X = planted_dictionary(n=3000, d=16, n_atoms=32, active=3, seed=1).X
    try:
        train({"h": X}, cfg=_cfg(), out=tmp_path / "run", verbose=False)
    finally:
        compute._auto.cache_clear()
    conf = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert conf["compute_dtype"] == "float32" and "0.02x" in conf["compute_dtype_reason"]
    assert conf["distributed"]["world_size"] == 1 and conf["distributed"]["frames_per_step_per_rank"] == [256]
    assert len(seen) == 12 and set(seen) == {torch.float32}
    train({"h": X}, cfg=_cfg(dtype="bfloat16", tokens=256), verbose=False)  # and the spy does see bf16
    assert seen[-1] == torch.bfloat16


def test_resume_may_change_the_dtype(tmp_path):
    X = planted_dictionary(n=3000, d=16, n_atoms=32, active=3, seed=1).X
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # a machine with fast bf16, interrupted
        train(_KilledInEpoch1({"h": X}, 256), cfg=_cfg(dtype="bfloat16"), out=out, verbose=False)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 6
    with pytest.raises(ValueError, match="settings differ"):  # the recipe itself may not change ...
        train({"h": X}, cfg=_cfg(dtype="float32", lr=1e-3), out=out, resume=True, verbose=False)
    # ... but the machine that resumes may compute in another dtype
    sae = train({"h": X}, cfg=_cfg(dtype="float32"), out=out, resume=True, verbose=False)["h"]
    assert torch.isfinite(sae.W_dec).all() and float(sae.threshold) > 0
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 12
    assert json.loads((out / "train_config.json").read_text())["compute_dtype"] == "float32"
