"""SAE training from an activation cache: ``sae train --resume`` (CacheSource) continues to the result of
an uninterrupted run and refuses changed settings; CacheSource keeps several hooks' frames aligned."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from sae.data import CacheSource
from sae.io import load_sae
from workbench.cache import build_cache
from workbench.cli import main
from workbench.corpus.types import Clip, Corpus
from workbench.models.base import AudioModel

pytestmark = pytest.mark.usefixtures("one_thread")


class TwinModel(AudioModel):
    """Two hooks with one frame grid (100 Hz): ``raw.hook_out`` and ``twin.hook_out = 2 * raw`` except on
    every 50th frame, where ``raw`` alone carries a huge spike (an outlier in one hook only)."""

    name = spec = "twin-test"
    sample_rate = 16000

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(1, 8, kernel_size=160, stride=160)
        self.raw, self.twin = nn.Identity(), nn.Identity()

    def hook_modules(self):
        return {"raw.hook_out": self.raw, "twin.hook_out": self.twin}

    def frame_rate(self, hook: str) -> float:
        return 100.0

    def _forward(self, audio):
        n = -(-max(len(a) for a in audio) // 160) * 160
        x = torch.zeros(len(audio), 1, n)
        for i, a in enumerate(audio):
            x[i, 0, : len(a)] = torch.from_numpy(a)
        f = torch.tanh(self.conv(x)).transpose(1, 2) + 1.0  # [B, T, 8], norms about sqrt(8)
        spike = torch.zeros_like(f)
        spike[:, ::50] = 1000.0
        self.raw(f + spike)
        self.twin(2 * f)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    rng = np.random.default_rng(0)
    clips = []
    for i in range(6):
        sf.write(root / f"c{i}.wav", (0.3 * rng.standard_normal(16000)).astype(np.float32), 16000)
        clips.append(Clip(f"c{i}", f"c{i}.wav", domain="speech", speaker=f"s{i % 2}", duration_s=1.0))
    corpus = Corpus(clips, root=root)
    corpus.save(root / "manifest.jsonl")
    return corpus


@pytest.fixture(scope="module")
def twin_cache(corpus, tmp_path_factory):
    return build_cache(TwinModel(), corpus, ["raw.hook_out", "twin.hook_out"], tmp_path_factory.mktemp("tc") / "cache",
                       dtype="float16", verbose=False)


@pytest.fixture(scope="module")
def whisper_cache(corpus, tmp_path_factory):
    from workbench.models.whisper import random_whisper

    return build_cache(random_whisper(seed=0), corpus, ["encoder.blocks.0.hook_resid_post",
                                                        "encoder.blocks.1.hook_resid_pre"],
                       tmp_path_factory.mktemp("wc") / "cache", verbose=False)


def test_cache_source_keeps_hooks_aligned_frame_for_frame(whisper_cache):
    """blocks.0.hook_resid_post and blocks.1.hook_resid_pre are the same tensor: every batch of the
    two hooks must be identical, row for row, in every epoch."""
    a, b = whisper_cache.hooks
    src = CacheSource(whisper_cache, [a, b], batch_size=64, seed=3)
    n = 0
    for epoch in (0, 1):
        for batch in src.epoch(epoch):
            assert torch.equal(batch[a], batch[b])
            n += 1
    assert n == 2 * (whisper_cache.n_frames(a) // 64)


def test_cache_source_drops_an_outlier_frame_for_every_hook(twin_cache):
    """A frame that is an outlier in one hook only (the spike in raw.hook_out) is dropped from both
    hooks' batches, so the streams stay aligned: twin == 2 * raw on every row of every batch."""
    src = CacheSource(twin_cache, ["raw.hook_out", "twin.hook_out"], batch_size=32, seed=0)
    rows = 0
    for batch in src.epoch(0):
        raw, twin = batch["raw.hook_out"], batch["twin.hook_out"]
        assert len(raw) == len(twin) and float(raw.norm(dim=1).max()) < 100  # no spike got through
        torch.testing.assert_close(twin, 2 * raw, rtol=2e-3, atol=2e-3)  # fp16 storage
        rows += len(raw)
    # 600 frames, 12 of them spikes (frames 0 and 50 of each clip): 18 batches of 32 minus the spikes in them
    assert 18 * 32 - 12 <= rows < 18 * 32


def _train(cache, out, *extra):
    return main(["sae", "train", "--cache", str(cache.root), "--hook", "encoder.blocks.*", "--expansion", "2",
                 "--k", "4", "--tokens", str(64 * 30), "--batch-size", "64", "--lr", "3e-3", "--threads", "1",
                 "--out", str(out), "--quiet", *extra])


def test_cli_resume_from_a_cache_matches_an_uninterrupted_run(whisper_cache, tmp_path, monkeypatch, capsys):
    import importlib

    train_mod = importlib.import_module("sae.train")  # `sae.train` the attribute is the function

    assert _train(whisper_cache, tmp_path / "full") == 0
    # interrupted: the process dies at step 17, after the checkpoint of step 10 (checkpoint_every=10)
    real_step = train_mod._train_step
    post_init = train_mod.TrainConfig.__post_init__

    def every_10_steps(cfg):  # the CLI has no --checkpoint-every: checkpoint often in this short run
        post_init(cfg)
        cfg.checkpoint_every = 10

    monkeypatch.setattr(train_mod.TrainConfig, "__post_init__", every_10_steps)

    def dies_at_17(st, x, step, *rest):
        if step == 17:
            raise KeyboardInterrupt("killed")
        return real_step(st, x, step, *rest)

    monkeypatch.setattr(train_mod, "_train_step", dies_at_17)
    assert _train(whisper_cache, tmp_path / "cut") == 130  # Ctrl-C / a kill: one line and exit code 130
    assert "interrupted; rerun the same command with --resume" in capsys.readouterr().err
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 10
    monkeypatch.setattr(train_mod, "_train_step", real_step)
    # without --resume the existing checkpoint is refused
    assert _train(whisper_cache, tmp_path / "cut") == 2
    assert "--resume" in capsys.readouterr().err
    # changed settings are refused, naming what changed
    assert _train(whisper_cache, tmp_path / "cut", "--resume", "--seed", "1") == 2
    assert "settings differ" in (err := capsys.readouterr().err) and "seed" in err
    assert main(["sae", "train", "--cache", str(whisper_cache.root), "--hook", "encoder.blocks.0.*", "--expansion",
                 "2", "--k", "4", "--tokens", str(64 * 30), "--batch-size", "64", "--lr", "3e-3", "--threads", "1",
                 "--out", str(tmp_path / "cut"), "--quiet", "--resume"]) == 2
    assert "hooks" in capsys.readouterr().err
    # the same settings continue from step 10 to the uninterrupted result
    assert _train(whisper_cache, tmp_path / "cut", "--resume") == 0
    for h in whisper_cache.hooks:
        full, resumed = load_sae(tmp_path / "full" / h), load_sae(tmp_path / "cut" / h)
        for name, p in full.state_dict().items():
            torch.testing.assert_close(resumed.state_dict()[name], p, rtol=1e-5, atol=1e-6, msg=name)
        steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / h / "training_log.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps))
