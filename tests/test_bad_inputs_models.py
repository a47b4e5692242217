"""Bad input, part 3: damaged SAEs, probe and SAE-training requests, model directories.

Uses the cochleagram cache of ``test_bad_inputs_cache`` and a small random SAE in the SAELens
layout written here (no training needed to be damaged).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from test_bad_inputs import assert_error, cli, synth, tree_hash  # noqa: F401  (synth is a fixture)
from test_bad_inputs_cache import HOOKS, fresh  # noqa: F401  (fresh is a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_sae(folder: Path, d_in: int = 211, d_sae: int = 32, hook: str = HOOKS[1]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    save_file({"W_enc": torch.randn(d_in, d_sae, generator=g), "b_enc": torch.zeros(d_sae),
               "W_dec": torch.randn(d_sae, d_in, generator=g), "b_dec": torch.zeros(d_in),
               "threshold": torch.full((d_sae,), 0.1)}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"d_in": d_in, "d_sae": d_sae, "k": 4, "hook_name": hook,
                                                 "architecture": "jumprelu"}))
    return folder


def _no_model_load(monkeypatch):
    import workbench.models

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(workbench.models, "load", refuse)


@pytest.mark.parametrize("damage", ["truncated", "empty", "cfg"])
def test_damaged_sae_is_named_by_sae_eval_and_probe(capsys, tmp_path, fresh, monkeypatch, damage):
    sae = _write_sae(tmp_path / "saes" / HOOKS[1])
    weights, cfg = sae / "sae_weights.safetensors", sae / "cfg.json"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        bad = weights
    elif damage == "empty":
        weights.write_bytes(b"")
        bad = weights
    else:
        cfg.write_text('{"d_in": 211, "hook_name": ')
        bad = cfg
    before = tree_hash(tmp_path)
    _no_model_load(monkeypatch)  # the SAE is checked before the (slow) model load
    rc, _, err = cli(capsys, "sae", "eval", "--sae", sae, "--cache", fresh, "--model", "whisper-tiny.en",
                     "--out", tmp_path / "eval", "--quiet")
    assert_error(rc, err, str(bad))
    rc, _, err = cli(capsys, "probe", "--cache", fresh, "--target", "phones", "--split", "clip", "--folds", "2",
                     "--sae", tmp_path / "saes", "--topk", "1,4", "--out", tmp_path / "probe")
    assert_error(rc, err, str(bad))
    assert tree_hash(tmp_path) == before  # no eval/ or probe/ folder started


def test_sae_for_another_width_or_hook_is_refused_before_the_model_load(capsys, tmp_path, fresh, monkeypatch):
    _no_model_load(monkeypatch)
    wide = _write_sae(tmp_path / "wide", d_in=384)
    rc, _, err = cli(capsys, "sae", "eval", "--sae", wide, "--cache", fresh, "--model", "whisper-tiny.en",
                     "--out", tmp_path / "eval", "--quiet")
    assert_error(rc, err, str(wide), "384", "211")
    other = _write_sae(tmp_path / "other", hook="encoder.blocks.3.hook_resid_post")
    rc, _, err = cli(capsys, "sae", "eval", "--sae", other, "--cache", fresh, "--model", "whisper-tiny.en",
                     "--out", tmp_path / "eval", "--quiet")
    assert_error(rc, err, str(other), "encoder.blocks.3.hook_resid_post", HOOKS[1])
    assert not (tmp_path / "eval").exists()


def test_sae_train_into_an_existing_run_without_resume(capsys, tmp_path, fresh):
    from sae.train import CHECKPOINT

    out = tmp_path / "run"
    out.mkdir()
    (out / CHECKPOINT).write_bytes(b"an earlier run's checkpoint")
    before = tree_hash(out)
    rc, _, err = cli(capsys, "sae", "train", "--cache", fresh, "--hook", HOOKS[1], "--tokens", "2000",
                     "--batch-size", "256", "--out", out, "--quiet")
    assert_error(rc, err, CHECKPOINT, "--resume")
    assert err.count("\n") <= 2, err  # one clear line, no traceback first
    assert tree_hash(out) == before


def test_sae_train_hook_that_matches_nothing(capsys, tmp_path, fresh):
    rc, _, err = cli(capsys, "sae", "train", "--cache", fresh, "--hook", "encoder.blocks.*", "--out", tmp_path / "r")
    assert_error(rc, err, "--hook", "encoder.blocks.*", HOOKS[1])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra,named", [
    (["--target", "emotion"], "--target 'emotion'"),
    (["--target", "phones", "--split", "session"], "--split 'session'"),
    (["--target", "phones", "--control-types", "nope"], "--control-types 'nope'"),
    (["--target", "phones", "--topk", "1,4"], "--topk needs --sae"),
    (["--target", "phones", "--hooks", "encoder.*"], "encoder.*"),
])
def test_probe_requests_checked_before_the_sweep(capsys, tmp_path, fresh, extra, named):
    out = tmp_path / "probe"
    rc, _, err = cli(capsys, "probe", "--cache", fresh, *extra, "--out", out)
    assert_error(rc, err, named)
    assert not out.exists()


def test_probe_out_that_is_a_file(capsys, tmp_path, fresh):
    f = tmp_path / "results.csv"
    f.write_text("a,b\n")
    rc, _, err = cli(capsys, "probe", "--cache", fresh, "--target", "phones", "--out", f)
    assert_error(rc, err, str(f), "existing file")
    assert f.read_text() == "a,b\n"


def test_sae_eval_without_an_sae(capsys, tmp_path, fresh):
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(capsys, "sae", "eval", "--sae", tmp_path / "empty", "--cache", fresh, "--out", tmp_path / "e")
    assert_error(rc, err, str(tmp_path / "empty"), "no SAE")


def test_model_dir_with_broken_config_json(capsys, tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "whisper", ')
    rc, _, err = cli(capsys, "models", "info", tmp_path)
    assert_error(rc, err, str(tmp_path / "config.json"), "not valid JSON")


def test_damaged_probe_checkpoint_is_named(capsys, tmp_path, fresh):
    out = tmp_path / "probe"
    argv = ["probe", "--cache", fresh, "--target", "phones", "--split", "clip", "--folds", "2", "--hooks", HOOKS[1],
            "--max-frames", "300", "--C", "1.0", "--out", out]
    rc, _, err = cli(capsys, *argv)
    assert rc == 0, err
    (ckpt,) = (out / "checkpoints").glob("*.json")
    ckpt.write_text(ckpt.read_text()[:40])
    before = tree_hash(out)
    rc, _, err = cli(capsys, *argv)
    assert_error(rc, err, str(ckpt), "not valid JSON")
    assert tree_hash(out) == before
