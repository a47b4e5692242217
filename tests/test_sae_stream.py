"""Streaming SAE training (sae.stream): each rank runs the model on its own clips, held-out clips never
reach the model, massive frames are dropped, and the trainer consumes the stream like a cache."""
from __future__ import annotations

import numpy as np
import pytest

from sae import TrainConfig, train
from sae.stream import StreamSource
from workbench.cache.distributed import share_bounds

HOOK = "encoder.blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def tiny():
    from workbench.models.whisper import random_whisper

    return random_whisper(seed=0)


def _audio(n=8, seconds=1.0):
    rng = np.random.default_rng(0)
    return [(0.2 * rng.standard_normal(int(16000 * seconds))).astype(np.float32) for _ in range(n)]


class _Recording(StreamSource):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen: list[int] = []

    def _load(self, i):
        self.seen.append(int(i))
        return super()._load(i)


def test_each_rank_streams_its_own_clips(tiny):
    audio = _audio()
    train_idx = [0, 1, 2, 3, 5, 6, 7]          # clip 4 is held out
    seen, sizes = [], []
    for rank in (0, 1):
        src = _Recording(tiny, audio, [HOOK], batch_size=64, seed=0, clips=train_idx, buffer_batches=2,
                         max_norm_ratio=None)
        batches = list(src.epoch(0, part=(rank, 2)))
        seen.append(set(src.seen))
        sizes.append({len(b[HOOK]) for b in batches})
        assert batches and all(b[HOOK].shape[1] == 64 for b in batches)
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(train_idx)
    lo, hi = share_bounds(64, 0, 2)
    assert sizes[0] == {hi - lo} and sizes[1] == {64 - (hi - lo)}


def test_massive_frames_dropped_and_training_runs(tiny):
    audio = _audio(6)
    full = StreamSource(tiny, audio, [HOOK], batch_size=32, seed=0, buffer_batches=2, max_norm_ratio=None)
    cut = StreamSource(tiny, audio, [HOOK], batch_size=32, seed=0, buffer_batches=2, max_norm_ratio=1.0)
    n_full = sum(len(b[HOOK]) for b in full.epoch(0))
    n_cut = sum(len(b[HOOK]) for b in cut.epoch(0))
    assert 0 < n_cut < n_full   # a cut at the median norm drops about half the frames
    src = StreamSource(tiny, audio, [HOOK], batch_size=64, seed=0, buffer_batches=2)
    cfg = TrainConfig(expansion=2, k=4, tokens=64 * 8, batch_size=64, warmup_steps=1, threshold_start_step=2,
                      scale_estimate_frames=64, threads=1)
    sae = train(src, cfg=cfg, verbose=False)[HOOK]
    assert sae.d_in == 64 and float(sae.threshold) > 0


def test_stream_source_refuses_no_clips(tiny):
    with pytest.raises(ValueError, match="no clips"):
        StreamSource(tiny, _audio(2), [HOOK], batch_size=8, clips=[])
