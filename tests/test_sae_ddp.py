"""Data-parallel SAE training: ``torchrun --nproc_per_node 2 -m workbench sae train`` (gloo, 2 CPU
processes) with the same global batch gives the same SAEs as one process, resumes a checkpoint
written by a different world size, and the global batch top-k keeps the single-process tie rule."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sae import TrainConfig, load_sae, train
from sae.data import BatchSource, CacheSource
from workbench.cli import main
from workbench.corpus.types import Clip, Corpus

STEPS, BATCH = 24, 256
ARGS = ["--hook", "encoder.blocks.*.hook_resid_post", "--expansion", "4", "--k", "8", "--tokens", str(STEPS * BATCH),
        "--batch-size", str(BATCH), "--dtype", "float32", "--threads", "1", "--quiet"]


def _torchrun() -> list[str]:
    exe = Path(sys.executable).parent / "torchrun"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]


def _run_torchrun(args: list[str], port_dir: Path) -> None:
    cmd = _torchrun() + ["--standalone", "--nproc_per_node", "2", "-m", "workbench", "sae", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=port_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from workbench.cache import build_cache
    from workbench.models.whisper import random_whisper

    root = tmp_path_factory.mktemp("ddp_corpus")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    clips = []
    for i in range(8):  # 8 x 2 s -> 800 frames per hook: 3 batches of 256, so the runs cross epochs
        tone = 0.3 * np.sin(2 * np.pi * (150 + 50 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        audio = tone + 0.05 * rng.standard_normal(len(t))
        sf.write(root / "audio" / f"c{i}.wav", audio.astype(np.float32), 16000)
        clips.append(Clip(f"c{i}", f"audio/c{i}.wav", domain="speech" if i % 2 else "music", duration_s=2.0))
    return build_cache(random_whisper(seed=0), Corpus(clips, root=root), "encoder.blocks.*.hook_resid_post",
                       root / "cache", verbose=False)


@pytest.fixture(scope="module")
def single(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "saes"
    assert main(["sae", "train", "--cache", str(cache.root), *ARGS, "--out", str(out)]) == 0
    return out


def _assert_same_saes(a: Path, b: Path, hooks) -> None:
    for h in hooks:
        sa, sb = load_sae(a / h).state_dict(), load_sae(b / h).state_dict()
        for name, t in sa.items():
            torch.testing.assert_close(sb[name], t, rtol=1e-4, atol=1e-5, msg=f"{h} {name}")


@pytest.mark.slow
def test_torchrun_two_ranks_train_the_same_saes_as_one_process(cache, single, tmp_path):
    out = tmp_path / "dist"
    _run_torchrun(["--cache", str(cache.root), *ARGS, "--out", str(out)], tmp_path)
    assert len(cache.hooks) >= 2  # every layer in one pass, one SAE per hook in OUT/HOOK/
    _assert_same_saes(single, out, cache.hooks)
    dist = json.loads((out / "train_config.json").read_text())["distributed"]
    assert dist["world_size"] == 2 and dist["frames_per_step_per_rank"] == [128, 128]
    assert dist["frames_per_epoch_per_rank"] == [400, 400]
    assert json.loads((single / "train_config.json").read_text())["distributed"]["world_size"] == 1
    # the trained SAEs are real ones, not two copies of an untrained init (FVU > 1 at init here)
    log = [json.loads(x) for x in (out / cache.hooks[0] / "training_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == STEPS and log[-1]["fvu"] < 0.5 and log[-1]["threshold"] > 0


class _Killed(RuntimeError):
    pass


class _KilledAt(BatchSource):
    """The cache's batches until epoch ``epoch`` starts (3 batches an epoch here), then a kill."""

    def __init__(self, inner: CacheSource, epoch: int) -> None:
        self.inner, self.kill_epoch = inner, epoch
        self.hooks, self.batch_size, self.meta = inner.hooks, inner.batch_size, inner.meta

    def d_model(self, hook):
        return self.inner.d_model(hook)

    def _epoch(self, epoch):
        if epoch >= self.kill_epoch:
            raise _Killed("simulated kill")
        return self.inner._epoch(epoch)


@pytest.mark.slow
def test_resume_one_process_checkpoint_under_two_ranks(cache, single, tmp_path):
    out = tmp_path / "resumed"
    cfg = TrainConfig(expansion=4, k=8, tokens=STEPS * BATCH, batch_size=BATCH, dtype="float32", threads=1,
                      checkpoint_every=5)
    with pytest.raises(_Killed):  # one process, killed at step 12: the last checkpoint is step 10
        train(_KilledAt(CacheSource(cache, cache.hooks, BATCH, seed=0), epoch=4), cfg=cfg, out=out, verbose=False)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 10
    _run_torchrun(["--cache", str(cache.root), *ARGS, "--out", str(out), "--resume"], tmp_path)
    _assert_same_saes(single, out, cache.hooks)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["world_size"] == 2


def _global_top_worker(rank: int, world: int, init: str, results) -> None:
    import torch.distributed as dist

    from sae.ddp import Collective
    from workbench.cache.distributed import Dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        # ties at the cut (value 2.0): 3 of the 4 tied entries fit; lower ranks, earlier entries first
        vals = {0: [3.0, 2.0, 2.0], 1: [2.0, 2.0, 1.0]}[rank]
        rows = torch.arange(3) + 3 * rank
        r, c, v = Collective(Dist(rank, world)).global_top(rows, torch.zeros(3, dtype=torch.long),
                                                           torch.tensor(vals), n=4)
        results[rank] = r.tolist()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_global_top_k_breaks_ties_like_one_process(tmp_path):
    import torch.multiprocessing as mp

    from sae.sparse import _exact_cut

    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_global_top_worker, args=(2, f"file://{tmp_path / 'store'}", results), nprocs=2)
    # one process over the whole batch: rows 0..5 with the same values
    rows, _, _ = _exact_cut(np.arange(6), np.array([3.0, 2.0, 2.0, 2.0, 2.0, 1.0], dtype=np.float32), 4, 1)
    assert results[0] + results[1] == rows.tolist() == [0, 1, 2, 3]


def test_rank_blocks_make_up_the_global_batch_and_hooks_share_frames(cache):
    src = CacheSource(cache, cache.hooks, BATCH, seed=3, max_norm_ratio=None)
    whole = list(src.epoch(1))
    halves = [list(src.epoch(1, part=(r, 2))) for r in range(2)]
    assert len(whole) == len(halves[0]) == 800 // BATCH
    for i, batch in enumerate(whole):
        for h in cache.hooks:
            assert halves[0][i][h].shape == (BATCH // 2, 64)
            torch.testing.assert_close(torch.cat([halves[0][i][h], halves[1][i][h]]), batch[h], rtol=0, atol=0)
    # every hook of a step sees the same frames: locate each batch row in the cache, hook by hook
    rows = {}
    for h in cache.hooks:
        full = torch.from_numpy(cache.load(h))
        dist = torch.cdist(whole[0][h], full, compute_mode="donot_use_mm_for_euclid_dist")
        rows[h] = dist.argmin(dim=1)
        assert dist.min(dim=1).values.max() == 0  # exact copies of cached frames
    a, b = (rows[h] for h in cache.hooks[:2])
    assert torch.equal(a, b) and len(set(a.tolist())) == BATCH
    assert not torch.equal(whole[0][cache.hooks[0]], list(src.epoch(2))[0][cache.hooks[0]])  # reshuffled per epoch


def test_outlier_frames_are_dropped_for_every_hook_of_the_step(cache):
    src = CacheSource(cache, cache.hooks, BATCH, seed=0, max_norm_ratio=1.0)  # about half the frames are above the median
    batch = next(iter(src.epoch(0)))
    n = {h: len(t) for h, t in batch.items()}
    assert len(set(n.values())) == 1 and 0 < n[cache.hooks[0]] < BATCH
