"""Bad input, part 7: the weak cases of issue 22.

Ctrl-C ends a command with one line and exit code 130; a full disk names the file and says
"no space left"; a ``cfg.json`` edited into nonsense is refused naming the file and field;
``sae eval --hook`` of another layer is refused without ``--force``; audio far below the model's
rate warns; user-facing warnings reach the user whatever ``PYTHONWARNINGS`` says.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from test_bad_inputs import assert_error, cli, synth, tree_hash  # noqa: F401  (synth is a fixture)
from test_bad_inputs_cache import HOOKS, fresh  # noqa: F401  (fresh is a fixture)
from test_bad_inputs_models import _no_model_load, _write_sae

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
TRAIN = ["--hook", HOOKS[1], "--tokens", "1024", "--batch-size", "256", "--quiet"]


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **extra}


# --- Ctrl-C -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,hint", [
    (["cache", "--model", "cochleagram", "--corpus", "SYNTH", "--hooks", HOOKS[1], "--out", "OUT"],
     "rerun the same command to resume"),
    (["sae", "train", "--cache", "CACHE", *TRAIN, "--out", "OUT"], "rerun the same command with --resume"),
    pytest.param(["sae", "eval", "--sae", "SAE", "--cache", "CACHE", "--out", "OUT", "--quiet", "--max-frames", "300",
                  "--erasure-probe", "fixed"], "written whole or not at all", marks=pytest.mark.slow),
])
def test_ctrl_c_is_one_line_and_exit_130(capsys, tmp_path, synth, fresh, monkeypatch, argv, hint):
    import importlib

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    for mod, name in (("workbench.cache", "build_cache"), ("sae.train", "train"), ("sae.summaries", "feature_summaries")):
        monkeypatch.setattr(importlib.import_module(mod), name, interrupt)
    sae_dir = _write_sae(tmp_path / "sae")
    subst = {"SYNTH": synth, "CACHE": fresh, "SAE": sae_dir, "OUT": tmp_path / "out"}
    before = tree_hash(fresh)
    rc, _, err = cli(capsys, *[subst.get(a, a) for a in argv])
    assert rc == 130 and "interrupted" in err and hint in err and "Traceback" not in err, err
    assert err.strip().count("\n") == 0, err  # one line
    assert tree_hash(fresh) == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary folder or lock left


@pytest.mark.slow
def test_ctrl_c_in_a_real_sae_train_process(tmp_path, fresh):
    """SIGINT to a running ``python -m workbench sae train``: exit 130, one line, the checkpoint resumes."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "workbench", "sae", "train", "--cache", str(fresh), "--hook", HOOKS[1],
           "--tokens", "100000000", "--batch-size", "256", "--threads", "1", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.time() + 240
    while not (out / "train_config.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("workbench sae train: interrupted;"), err
    assert not (tmp_path / ".run.lock").exists()


# --- full disk ----------------------------------------------------------------------------------------
def test_full_disk_names_the_file(tmp_path):
    from workbench.atomic import DiskFullError, atomic_path

    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(DiskFullError, match=rf"no space left on device writing {target}") as e:
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            with open("/dev/full", "w") as f:  # a real ENOSPC from the kernel
                f.write("x" * 10)
                f.flush()
    assert e.value.errno == errno.ENOSPC and target.read_text() == "old\n" and os.listdir(tmp_path) == ["table.csv"]


def test_full_disk_during_an_sae_checkpoint(capsys, tmp_path, fresh, monkeypatch):
    """torch.save's own error ("file write failed") on a full file system becomes "no space left" + the path."""
    import importlib

    import workbench.atomic

    def torch_save_on_a_full_disk(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    real_statvfs = os.statvfs

    def full(path):
        st = real_statvfs(path)
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, 0, 0, st.f_files, st.f_ffree, st.f_favail,
                                  st.f_flag, st.f_namemax))

    monkeypatch.setattr(importlib.import_module("sae.train").torch, "save", torch_save_on_a_full_disk)
    monkeypatch.setattr(workbench.atomic.os, "statvfs", full)
    rc, _, err = cli(capsys, "sae", "train", "--cache", fresh, *TRAIN, "--out", tmp_path / "run")
    assert_error(rc, err, "no space left on device", str(tmp_path / "run" / "checkpoint.pt"))
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


# --- cfg.json edited into nonsense --------------------------------------------------------------------
@pytest.mark.parametrize("edit,field", [
    ({"d_in": 384}, "d_in"), ({"d_sae": 7}, "d_sae"), ({"k": "abc"}, "k"), ({"k": 0}, "k"), ({"k": 10_000}, "k"),
    ({"k": float("nan")}, "k"), ({"hook_name": 5}, "hook_name"), ({"metadata": {"k": -1}}, "metadata.k"),
    ({"metadata": "x"}, "metadata"),
])
def test_corrupted_cfg_json_is_named_with_its_field(capsys, tmp_path, fresh, monkeypatch, edit, field):
    sae_dir = _write_sae(tmp_path / "sae")
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    (sae_dir / "cfg.json").write_text(json.dumps({**cfg, **edit}))
    before = tree_hash(tmp_path)
    _no_model_load(monkeypatch)
    rc, _, err = cli(capsys, "sae", "eval", "--sae", sae_dir, "--cache", fresh, "--model", "whisper-tiny.en",
                     "--out", tmp_path / "eval", "--quiet")
    assert_error(rc, err, str(sae_dir / "cfg.json"), f"'{field}'")
    assert tree_hash(tmp_path) == before


def test_non_finite_sae_weights_are_named(capsys, tmp_path, fresh):
    import torch
    from safetensors.torch import load_file, save_file

    sae_dir = _write_sae(tmp_path / "sae")
    w = load_file(str(sae_dir / "sae_weights.safetensors"))
    w["threshold"] = torch.full_like(w["threshold"], float("nan"))
    save_file(w, str(sae_dir / "sae_weights.safetensors"))
    rc, _, err = cli(capsys, "sae", "eval", "--sae", sae_dir, "--cache", fresh, "--out", tmp_path / "eval", "--quiet")
    assert_error(rc, err, "sae_weights.safetensors", "'threshold'", "NaN")
    assert not (tmp_path / "eval").exists()


# --- sae eval --hook of another layer -----------------------------------------------------------------
def test_sae_eval_on_another_layer_needs_force(capsys, caplog, tmp_path, fresh, monkeypatch):
    sae_dir = _write_sae(tmp_path / "sae", hook=HOOKS[1])  # same width as HOOKS[0]: only the name tells them apart
    _no_model_load(monkeypatch)
    rc, _, err = cli(capsys, "sae", "eval", "--sae", sae_dir, "--cache", fresh, "--hook", HOOKS[0], "--model",
                     "whisper-tiny.en", "--out", tmp_path / "eval", "--quiet")
    assert_error(rc, err, str(sae_dir), HOOKS[1], HOOKS[0], "--force")
    assert not (tmp_path / "eval").exists()
    with caplog.at_level(logging.WARNING):
        rc, _, err = cli(capsys, "sae", "eval", "--sae", sae_dir, "--cache", fresh, "--hook", HOOKS[0], "--force",
                         "--out", tmp_path / "eval", "--quiet", "--erasure-probe", "fixed", "--max-frames", "300")
    assert rc == 0, err
    assert any(HOOKS[1] in r.getMessage() and "--force" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "eval" / HOOKS[0] / "eval.json").is_file()


# --- audio far below the model's rate; warnings visible whatever PYTHONWARNINGS says -----------------
def test_audio_at_100_hz_warns_naming_file_and_rate(tmp_path):
    from workbench.audio import LowRateWarning, iter_audio_chunks, load_audio

    path = tmp_path / "low.wav"
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(300)).astype(np.float32), 100)
    with pytest.warns(LowRateWarning, match=rf"{path}: recorded at 100 Hz, far below the 16000 Hz"):
        load_audio(path, sr=16000)
    with pytest.warns(LowRateWarning, match="100 Hz"):
        list(iter_audio_chunks(path, sr=16000))
    ok = tmp_path / "phone.wav"
    sf.write(ok, (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 8000)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", LowRateWarning)
        load_audio(ok, sr=16000)  # telephone speech is not "far below"


def test_user_warnings_pass_an_ignore_filter(capsys, caplog, monkeypatch, synth):
    """``PYTHONWARNINGS=ignore`` / ``-W ignore`` (common in scripts) hid every warning; the CLI logs them."""
    import warnings

    import workbench.corpus
    from workbench.audio import LowRateWarning

    real = workbench.corpus.load_corpus

    def warn_then_load(*a, **k):
        warnings.warn("x.wav: recorded at 100 Hz, far below the 16000 Hz", LowRateWarning, stacklevel=2)
        return real(*a, **k)

    monkeypatch.setattr(workbench.corpus, "load_corpus", warn_then_load)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("ignore")  # what PYTHONWARNINGS=ignore installs at start-up
        rc, _, err = cli(capsys, "corpus", "info", synth)
        warnings.warn("not ours", UserWarning)  # other warnings still follow the filter
    assert rc == 0, err
    shown = [r for r in caplog.records if "recorded at 100 Hz" in r.getMessage()]
    assert len(shown) == 1 and shown[0].name == "workbench" and shown[0].levelno == logging.WARNING


@pytest.mark.slow
def test_low_rate_audio_reaches_the_user_with_pythonwarnings_ignore(tmp_path):
    audio = tmp_path / "c" / "low.wav"
    audio.parent.mkdir()
    sf.write(audio, (0.1 * np.random.default_rng(0).standard_normal(400)).astype(np.float32), 100)
    (audio.parent / "manifest.jsonl").write_text(json.dumps({"id": "low", "path": "low.wav", "domain": "speech"}) + "\n")
    cmd = [sys.executable, "-m", "workbench", "cache", "--model", "cochleagram", "--corpus", str(audio.parent),
           "--hooks", HOOKS[1], "--out", str(tmp_path / "cache"), "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(PYTHONWARNINGS="ignore"), timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"{audio}: recorded at 100 Hz, far below the 16000 Hz" in res.stderr, res.stderr
